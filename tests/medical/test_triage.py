"""End to end: the committed bundle on real and crafted inputs, outputs, identifiers, watch."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from apps.medical_imaging.audit import verify
from apps.medical_imaging.triage import Triage, scan

from .conftest import chest_like, make_dicom, write_png
from .test_io import _nan_tiff, _truncated, huge_png


def _val(shared_dir):
    from apps.medical_imaging.data import load_split

    p = shared_dir / "data" / "medical" / "pneumoniamnist_28.npz"
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return load_split(p, "val")


@pytest.mark.shared
def test_committed_bundle_val_auc(bundle_path, shared_dir):
    from apps.medical_imaging.evaluate import evaluate_model
    from apps.medical_imaging.model import TriageModel

    x, y = _val(shared_dir)
    with TriageModel(bundle_path) as m:
        r = evaluate_model(m, x, y, latency_iters=5)
    assert r["auc"] >= 0.94
    assert r["sensitivity"] >= 0.95           # the operating point was chosen on this split
    assert abs(r["auc"] - m.bundle.manifest.metrics["val_auc"]) < 1e-3   # card matches the model


def _pydicom(name):
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    p = get_testdata_file(name, download=False)
    if p is None:
        pytest.skip(f"pydicom test file {name} not shipped")
    return p


def test_bad_input_table_end_to_end(bundle_path, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(_pydicom("CT_small.dcm"), src / "ct.dcm")
    shutil.copy(_pydicom("MR_small.dcm"), src / "mr.dcm")
    _truncated(src, ".png")
    _truncated(src, ".jpg")
    _nan_tiff(src)
    huge_png(src / "huge.png")
    make_dicom(src / "nopix.dcm", pixels=False)
    write_png(src / "blank.png", np.full((64, 64), 0.5, np.float32))
    write_png(src / "small.png", chest_like(16))
    write_png(src / "vanishing.png", chest_like(64))
    write_png(src / "chest.png", chest_like(64))
    paths = scan(src)
    (src / "vanishing.png").unlink()                # disappears between the scan and the read
    out = tmp_path / "out"
    with Triage(out, [bundle_path]) as tri:
        tri.run(paths)
    assert len(tri.studies) == len(paths)
    by_reason = {s.reasons[0] for s in tri.studies}
    expected = ["modality CT not accepted by model (accepts CR, DX, DR)",
                "modality MR not accepted by model (accepts CR, DX, DR)"]
    for e in expected:
        assert e in by_reason
    for frag in ("truncated PNG", "truncated JPEG", "not finite", "refused before decoding", "no pixel data",
                 "constant or blank", "smaller than the minimum", "file vanished"):
        assert any(frag in r for r in by_reason), frag
    for s in tri.studies:
        if s.status != "ok":
            assert s.priority != "routine", "an uncertain or failed study must never be routine"
    assert sum(s.status == "not_analysed" for s in tri.studies) >= 10
    assert verify(out / "audit.jsonl").ok
    assert len((out / "audit.jsonl").read_text().splitlines()) == len(paths)
    data = json.loads((out / "worklist.json").read_text())
    assert len(data["studies"]) == len(paths) and "not a medical device" in data["disclaimer"]
    assert (out / "worklist.csv").read_text().count("\n") == len(paths) + 1


@pytest.mark.shared
def test_real_images_and_dicom_equivalence(bundle_path, shared_dir, tmp_path):
    """A real val image as PNG and as a MONOCHROME1 DICOM with slope/intercept and a window
    gives the same probability; real val images are analysed, not refused."""
    x, y = _val(shared_dir)
    src = tmp_path / "in"
    src.mkdir()
    idx = [i for i in range(len(x)) if y[i] == 1][:4] + [i for i in range(len(x)) if y[i] == 0][:4]
    for i in idx:
        cv2.imwrite(str(src / f"val{i}.png"), x[i])
    img = x[idx[0]].astype(np.float32) / 255.0
    make_dicom(src / "val_as_dicom.dcm", img, photometric="MONOCHROME1", slope=2.0, intercept=-100.0,
               window=(2000.0, 4000.0), modality="CR")
    with Triage(tmp_path / "out", [bundle_path], include_identifiers=True) as tri:
        tri.run(scan(src))
    by = {Path(s.source).name: s for s in tri.studies}
    analysed = [by[f"val{i}.png"] for i in idx if by[f"val{i}.png"].status in ("ok", "abstain")]
    assert len(analysed) >= 7          # the OOD gate refuses about 1% of genuine val images
    for i in idx:
        s = by[f"val{i}.png"]
        assert s.status != "not_analysed" or s.reasons[0].startswith("out of distribution")
    d, p = by["val_as_dicom.dcm"], by[f"val{idx[0]}.png"]
    assert d.status == p.status and abs(d.ood_score - p.ood_score) < 0.05 * p.ood_score
    if p.probability is not None:
        assert abs(d.probability - p.probability) < 0.02
    assert "MONOCHROME1 inverted" in d.notes
    flagged = [s for s in tri.studies if s.priority in ("urgent", "review") and s.status != "not_analysed"]
    assert flagged and all(s.heatmap and (tmp_path / "out" / s.heatmap).is_file() for s in flagged)
    pos = [by[f"val{i}.png"].probability for i in idx[:4] if by[f"val{i}.png"].probability is not None]
    neg = [by[f"val{i}.png"].probability for i in idx[4:] if by[f"val{i}.png"].probability is not None]
    assert np.mean(pos) > np.mean(neg)


def test_identifiers_only_when_asked(bundle_path, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    make_dicom(src / "Doe_Jane.dcm", chest_like(64), photometric="MONOCHROME1", slope=2.0, intercept=-100.0,
               patient="Doe^Jane")
    for flag in (False, True):
        out = tmp_path / f"out{flag}"
        with Triage(out, [bundle_path], include_identifiers=flag) as tri:
            tri.run(scan(src))
        text = "".join((out / f).read_text() for f in ("worklist.json", "worklist.csv", "report.html", "audit.jsonl"))
        for ident in ("Doe^Jane", "PID-12345", "20190101", "Doe_Jane"):
            assert (ident in text) is flag, (ident, flag)
        assert "Doe^Jane" not in (out / "audit.jsonl").read_text()


def test_watch_folder_processes_new_files(bundle_path, tmp_path):
    src = tmp_path / "watched"
    src.mkdir()
    write_png(src / "a.png", chest_like(64, 1))
    with Triage(tmp_path / "out", [bundle_path]) as tri:
        tri.watch(src, interval=0, max_polls=2)        # poll 1 sees it, poll 2 finds its size stable
        assert len(tri.studies) == 1
        write_png(src / "b.png", chest_like(64, 2))
        tri.watch(src, interval=0, max_polls=2)
        assert len(tri.studies) == 2                  # a.png not processed twice
    assert json.loads((tmp_path / "out" / "worklist.json").read_text())["studies"][1]


def test_cli_triage_and_watch(bundle_path, tmp_path, capsys):
    from sdk.cli.main import main

    src = tmp_path / "in"
    src.mkdir()
    write_png(src / "a.png", chest_like(64))
    argv = ["medical", "triage", str(src), "--out", str(tmp_path / "o1"), "--json", "--bundle", str(bundle_path)]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and "source" not in rows[0]
    assert main(["medical", "triage", str(src), "--out", str(tmp_path / "o2"), "--watch",
                 "--max-polls", "2", "--interval", "0", "--bundle", str(bundle_path)]) == 0
    assert (tmp_path / "o2" / "report.html").is_file()
    assert main(["medical", "triage", str(tmp_path / "nope"), "--out", str(tmp_path / "o3")]) == 2


@pytest.mark.slow
def test_report_renders_in_headless_chromium(bundle_path, tmp_path):
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if not chromium:
        pytest.skip("chromium not installed")
    src = tmp_path / "in"
    src.mkdir()
    write_png(src / "chest.png", chest_like(128))
    write_png(src / "blank.png", np.full((64, 64), 0.5, np.float32))
    out = tmp_path / "out"
    with Triage(out, [bundle_path], heatmaps=True) as tri:
        tri.run(scan(src))
    html = (out / "report.html").read_text()
    assert "Reference design — not a medical device" in html and "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html and "<script" not in html
    shot = tmp_path / "shot.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,800",
           (out / "report.html").as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=60)
    img = cv2.imread(str(shot))
    assert img is not None, "chromium wrote no screenshot"
    # the red banner is rendered at the top of the page
    top = img[5:30, 5:300].reshape(-1, 3).mean(0)   # BGR
    assert top[2] > 140 and top[1] < 60 and top[0] < 80, top
    assert img.std() > 20   # not a blank page


def test_occlusion_heatmap_follows_the_model(bundle_path):
    """Occluding the region the model uses lowers its probability: the heat there is highest."""
    from apps.medical_imaging.explain import occlusion_map, overlay
    from apps.medical_imaging.model import TriageModel

    with TriageModel(bundle_path) as m:
        img = chest_like(28, 3)
        heat, p0 = occlusion_map(m, img)
        assert heat.shape == (28, 28) and (heat >= 0).all()
        ov = overlay(img, heat, max_side=128)
        assert ov.shape == (128, 128, 3) and ov.dtype == np.uint8
        if heat.max() > 0:
            # re-occlude the hottest patch: probability drops by about the heat found there
            y, x = np.unravel_index(np.argmax(heat), heat.shape)
            x0 = m.prepare([img])
            x1 = x0.copy()
            x1[:, :, max(0, y - 3):y + 4, max(0, x - 3):x + 4] = 0
            p1 = m.policy.probability(m.run(x1)[0])[0]
            assert p1 < p0


def test_demo_runs(bundle_path, tmp_path, capsys, monkeypatch):
    if bundle_path != bundle_path.parent / "pneumonia-triage":
        pytest.skip("demo uses the committed bundle")
    from apps.medical_imaging.demo import demo

    report = demo(tmp_path / "demo")
    assert report.is_file()
    out = capsys.readouterr().out
    assert "report:" in out and "not_analysed" in out


def test_bundles_served_by_modality(bundle_path, tmp_path):
    breast = bundle_path.parent / "breast-us-triage"
    if not (breast / "manifest.json").is_file():
        pytest.skip(f"no breast ultrasound bundle at {breast}")
    from apps.medical_imaging.demo import write_dicom

    src = tmp_path / "in"
    src.mkdir()
    us = (chest_like(64, 4) * 255).astype(np.uint8)
    write_dicom(src / "us.dcm", us, "US", "BREAST")
    write_dicom(src / "cr.dcm", us, "CR", "CHEST")
    shutil.copy(_pydicom("CT_small.dcm"), src / "ct.dcm")
    with Triage(tmp_path / "out", [bundle_path, breast], include_identifiers=True) as tri:
        tri.run(scan(src))
    by = {Path(s.source).name: s for s in tri.studies}
    assert by["us.dcm"].model.startswith("breast-us-triage")
    assert by["cr.dcm"].model.startswith("pneumonia-triage")
    assert by["ct.dcm"].reasons == ["modality CT not accepted by any model (accepts CR, DR, DX, US)"]


@pytest.mark.shared
def test_evaluate_cli_side_by_side(bundle_path, shared_dir, capsys):
    from sdk.cli.main import main

    if not (bundle_path.parent / "pneumonia-teacher" / "manifest.json").is_file():
        pytest.skip("teacher bundle not committed next to the student")
    data = shared_dir / "data" / "medical" / "pneumoniamnist_28.npz"
    assert main(["medical", "evaluate", str(data), "--json", "--iters", "5"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["teacher (FP32)", "student (FP32)", "student (optimized)"]
    for r in rows:
        assert r["auc"] >= 0.94 and r["n"] == 524 and 0 <= r["ece"] < 0.2 and r["size_bytes"] > 0
    assert rows[2]["size_bytes"] <= 1.05 * rows[1]["size_bytes"] and rows[1]["size_bytes"] < rows[0]["size_bytes"]


def test_unexpected_failure_is_one_not_analysed_study(bundle_path, tmp_path, monkeypatch):
    import apps.medical_imaging.triage as triage_mod

    src = tmp_path / "in"
    src.mkdir()
    write_png(src / "a.png", chest_like(64, 1))
    write_png(src / "b.png", chest_like(64, 2))
    real = triage_mod.decode

    def flaky(hdr, limits=None):
        if hdr.path.name == "a.png":
            raise RuntimeError("decoder crashed")
        return real(hdr, limits)

    monkeypatch.setattr(triage_mod, "decode", flaky)
    with Triage(tmp_path / "out", [bundle_path], include_identifiers=True) as tri:
        tri.run(scan(src))
    by = {Path(s.source).name: s for s in tri.studies}
    assert by["a.png"].status == "not_analysed" and "decoder crashed" in by["a.png"].reasons[0]
    assert by["b.png"].reasons[0] != by["a.png"].reasons[0]
    assert verify(tmp_path / "out" / "audit.jsonl").lines == 2
