"""Outputs of a triage run: ``worklist.json``, ``worklist.csv`` and a self-contained
``report.html`` (thumbnails and heatmaps embedded as base64, no external resources)."""
from __future__ import annotations

import base64
import csv
import html
import json
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Sequence

from apps.medical_imaging.worklist import Study

BANNER = "Reference design — not a medical device. Not for diagnostic use."
CSV_FIELDS = ["rank", "study_id", "priority", "status", "probability", "promoted", "arrival", "modality",
              "reasons", "notes", "model", "input_sha256", "heatmap", "source"]


def _tmp(path: Path) -> Path:
    """A temporary name next to ``path`` that no concurrent writer shares."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _replace(tmp: Path, path: Path) -> None:
    try:
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, ordered: Sequence[Study], meta: dict) -> None:
    rows = [{"rank": i + 1, **s.model_dump(mode="json", exclude_none=True)} for i, s in enumerate(ordered)]
    tmp = _tmp(path)
    tmp.write_text(json.dumps({**meta, "studies": rows}, indent=1, ensure_ascii=False), encoding="utf-8")
    _replace(tmp, path)


def write_csv(path: Path, ordered: Sequence[Study]) -> None:
    tmp = _tmp(path)
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for i, s in enumerate(ordered):
            w.writerow({"rank": i + 1, "study_id": s.study_id, "priority": s.priority, "status": s.status,
                        "probability": "" if s.probability is None else f"{s.probability:.4f}",
                        "promoted": s.promoted, "arrival": s.arrival.isoformat(), "modality": s.modality or "",
                        "reasons": " | ".join(s.reasons), "notes": " | ".join(s.notes), "model": s.model or "",
                        "input_sha256": s.input_sha256 or "", "heatmap": s.heatmap or "",
                        "source": s.source or ""})
    _replace(tmp, path)


def _img(out_dir: Path, rel: str | None, alt: str) -> str:
    if not rel or not (out_dir / rel).is_file():
        return '<span class="none">—</span>'
    b64 = base64.b64encode((out_dir / rel).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


_CSS = """
body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;margin:0;background:#f4f5f7;color:#222}
.banner{background:#b00020;color:#fff;font-weight:700;padding:12px 20px;font-size:18px}
header{padding:12px 20px} header p{margin:4px 0;color:#444}
table{border-collapse:collapse;margin:0 20px 30px;background:#fff;width:calc(100% - 40px)}
th,td{border-bottom:1px solid #ddd;padding:6px 8px;vertical-align:top;text-align:left;font-size:14px}
th{background:#e8eaee} img{width:128px;height:auto;image-rendering:pixelated;border:1px solid #ccc}
.p-urgent{color:#fff;background:#c62828} .p-review{background:#ffb300} .p-routine{background:#c8e6c9}
.badge{padding:2px 8px;border-radius:10px;font-weight:600;white-space:nowrap}
.s-abstain,.s-not_analysed{font-weight:700;color:#8a4b00} .none{color:#999} .mono{font-family:monospace}
.promoted{color:#6a1b9a;font-weight:700}
"""


def write_html(path: Path, ordered: Sequence[Study], meta: dict) -> None:
    out_dir = path.parent
    rows = []
    for i, s in enumerate(ordered):
        prob = "—" if s.probability is None else f"{s.probability:.3f}"
        reasons = "<br>".join(html.escape(r) for r in s.reasons) or '<span class="none">—</span>'
        notes = "<br>".join(html.escape(n) for n in s.notes)
        promoted = '<div class="promoted">promoted: waited past the cap</div>' if s.promoted else ""
        src = f'<div class="mono">{html.escape(s.source)}</div>' if s.source else ""
        rows.append(
            f"<tr><td>{i + 1}</td><td class=mono>{html.escape(s.study_id)}{src}</td>"
            f'<td><span class="badge p-{s.priority}">{s.priority}</span>{promoted}</td>'
            f'<td class="s-{s.status}">{s.status.replace("_", " ")}</td><td>{prob}</td>'
            f"<td>{_img(out_dir, s.thumbnail, 'image ' + s.study_id)}</td>"
            f"<td>{_img(out_dir, s.heatmap, 'heatmap ' + s.study_id)}</td>"
            f"<td>{reasons}<div class=none>{notes}</div></td></tr>")
    counts = {k: sum(1 for s in ordered if s.status == k) for k in ("ok", "abstain", "not_analysed")}
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Triage worklist</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body><div class="banner" role="alert">{html.escape(BANNER)}</div>
<header><h1>Triage worklist</h1>
<p>Generated {html.escape(meta.get('generated', datetime.now().isoformat()))} by
{html.escape(str(meta.get('models', '')))} (Edgewise {html.escape(str(meta.get('sdk_version', '')))}).</p>
<p>{len(ordered)} studies: {counts['ok']} analysed, {counts['abstain']} abstained,
{counts['not_analysed']} not analysed. Abstained and not-analysed studies need a reader; none of them
is reported as normal. Probabilities are calibrated on the validation split; the heatmap
(occlusion sensitivity) shows where hiding the image lowered the score most.</p></header>
<table><thead><tr><th>#</th><th>Study</th><th>Priority</th><th>Status</th><th>Probability</th>
<th>Image</th><th>Heatmap</th><th>Reasons</th></tr></thead><tbody>
{''.join(rows)}
</tbody></table></body></html>
"""
    tmp = _tmp(path)
    tmp.write_text(doc, encoding="utf-8")
    _replace(tmp, path)
