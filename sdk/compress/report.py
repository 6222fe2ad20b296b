"""The optimization report: ``report.json``, ``report.md`` and ``pareto.png``."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sdk.errors import DependencyMissingError, require

logger = logging.getLogger("edgewise")


def _fmt(v: Any, spec: str, suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def _energy(e: dict[str, Any] | None) -> str:
    if not e or e.get("joules_per_inference") is None:
        return "-"
    label = "RAPL" if e.get("source") == "rapl" else "estimate"
    return f"{e['joules_per_inference'] * 1000:.2f} mJ ({label})"


def markdown(result: Any) -> str:
    d = result.to_dict()
    lines = [
        f"# Optimization report: {Path(d['model']).name}", "",
        f"- target: `{d['target']}`; metric: `{d['metric']}` (higher is better)",
        f"- budget: drop at most {d['budget']['text']} = {d['budget']['allowed_drop']:.4g}"
        + ("; **size-only** selection" if d["size_only"] else ""),
        f"- chosen: **{d['chosen']}**", f"- note: {d['note']}",
        f"- CPU: {d.get('isa_profile') or '?'} ({_isa(d.get('device') or {})})",
        f"- data: search {(d.get('evaluation') or {}).get('search', {}).get('size') or '-'}"
        + (f"; held-out {d['evaluation']['holdout']['size']} (the budget is judged there)"
           if (d.get("evaluation") or {}).get("holdout") else "; no held-out split"),
        "- latency: median over interleaved rounds of each round's best run, measured together with the "
        "FP32 input; speedup >1 = faster, with the 90% interval of the paired per-round ratio; CPU ms = "
        "process CPU time of the same runs (all threads)", "",
        "| | candidate | recipe | latency ms | CPU ms | speedup (90% CI) | size MB | size ratio | metric "
        "| search metric "
        "| delta | energy / inference | budget | Pareto | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in d["candidates"]:
        ci = c.get("speedup_ci")
        lines.append("| " + " | ".join([
            "**>**" if c["chosen"] else "", c["name"], c["recipe_text"].replace("|", "/"),
            _fmt(c["latency_ms"], ".2f"), _fmt(c.get("cpu_ms"), ".2f"),
            _fmt(c["speedup"], ".2f", "x") + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else ""),
            _fmt(c["size_bytes"] / 1e6 if c["size_bytes"] else None, ".3f"), _fmt(c["size_ratio"], ".2f", "x"),
            _fmt(c["metric"], ".4f"), _fmt(c.get("search_metric"), ".4f"), _fmt(c["delta"], "+.4f"),
            _energy(c["energy"]),
            ("ok" if c["within_budget"] else "over") if c["metric"] is not None else "-",
            "yes" if c["pareto"] else "", (c["error"] or "").replace("|", "/").replace("\n", " ")[:160],
        ]) + " |")
    if d.get("skipped"):
        lines += ["", "## Skipped on this hardware", "", "| candidates | reason |", "|---|---|"]
        lines += [f"| {x['name']} | {x['reason']} |" for x in d["skipped"]]
    if d.get("sensitivity") and d["sensitivity"].get("groups"):
        s = d["sensitivity"]
        lines += ["",
                  "## Sensitivity (static QDQ per-channel, Percentile ranges; one group kept in float at a time)", "",
                  f"All quantized: {s['metric_all_quantized']:.4f} ({s['evals']} evaluations)", "",
                  "| nodes kept in float | metric | gain |", "|---|---|---|"]
        lines += [f"| {g['nodes']} | {_fmt(g['metric'], '.4f')} | {g['gain']:+.4f} |" for g in s["groups"]]
    a = d.get("bit_allocation")
    if a and a.get("trials"):
        lines += ["", "## Bit allocation (weights at int4, the rest int8; activations float)", "",
                  f"Floor {a['floor']:.4f}; chosen: {len(a['low_bit_nodes'])} layers at int4"
                  + (f", metric {a['metric']:.4f}" if a.get("metric") is not None else ""), "",
                  "| order | layers at int4 | bytes | metric | within budget |", "|---|---|---|---|---|"]
        lines += [f"| {t.get('order', '')} | {t['k']} | {t['bytes']} | {t['metric']:.4f} "
                  f"| {'yes' if t['ok'] else 'no'} |"
                  for t in a["trials"]]
    energy_sources = {(c["energy"] or {}).get("source") for c in d["candidates"] if c["energy"]}
    if "estimate" in energy_sources:
        note = next((c["energy"].get("note") for c in d["candidates"] if c["energy"]), "")
        lines += ["", f"Energy figures marked *estimate* are not measured: {note}"]
    return "\n".join(lines) + "\n"


def _isa(device: dict[str, Any]) -> str:
    from sdk.runtime import DeviceInfo

    return DeviceInfo.model_validate(device).summary() if device else "device not read"


def plot_pareto(result: Any, path: Path) -> Path:
    """Latency against metric. Only the in-budget Pareto front and the choice are labelled (the
    table lists the rest); the front is drawn through in-budget candidates only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [c for c in result.candidates if c.metric is not None and c.latency_ms is not None]
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    smax = max(c.size_bytes for c in pts)
    front = sorted((c for c in result.pareto if c.within_budget), key=lambda c: c.latency_ms)
    for c in pts:
        size = 40 + 600 * c.size_bytes / smax
        color = "tab:green" if c.within_budget else "tab:red"
        ax.scatter(c.latency_ms, c.metric, s=size, alpha=0.35 if c not in front else 0.7, color=color,
                   edgecolors="k", linewidths=0.5)
        if c.search_metric is not None and c.search_metric != c.metric:      # search -> held-out
            ax.plot([c.latency_ms, c.latency_ms], [c.search_metric, c.metric], color="grey", lw=0.6, alpha=0.6)
    for i, c in enumerate(front):
        ax.annotate(c.name, (c.latency_ms, c.metric), fontsize=7, xytext=(6, 8 + 10 * (i % 3)),
                    textcoords="offset points", arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "grey"})
    if front:
        ax.plot([c.latency_ms for c in front], [c.metric for c in front], "--", color="tab:blue", lw=1,
                label="Pareto front (within budget)")
    ch = result.chosen
    ax.scatter([ch.latency_ms], [ch.metric], marker="*", s=320, color="gold", edgecolors="k", zorder=5,
               label=f"chosen: {ch.name}")
    ax.axhline(result.baseline.metric - result.allowed_drop, color="grey", lw=0.8, ls=":", label="budget")
    ax.set_xlabel("latency (ms, median over rounds of the best run per round)")
    ax.set_ylabel(f"{result.metric_name} (higher is better)")
    held = (getattr(result, "evaluation", None) or {}).get("holdout")
    ax.set_title(f"{Path(result.model).name}: {len(pts)} candidates (size = model size; red = over budget"
                 + ("; grey line: search -> held-out metric)" if held else ")"), fontsize=9)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(result: Any, out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.md and pareto.png into ``out_dir``; returns their paths.

    The plot needs matplotlib (extra ``report``); without it the plot is skipped with a warning
    that names the extra, and the returned dict has no ``"plot"``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md"}
    paths["json"].write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown(result), encoding="utf-8")
    try:
        require("matplotlib", "report", "the Pareto plot")
    except DependencyMissingError as exc:
        logger.warning("pareto.png not written: %s", exc)
    else:
        paths["plot"] = plot_pareto(result, out / "pareto.png")
    logger.info("report written to %s", out)
    return paths
