"""The reference-app modules the templates copy: data readers refuse bad input naming the
file and line, the zone rules validate, chrF agrees with sacrebleu."""
from __future__ import annotations

import numpy as np
import pytest

from apps.driving_perception.yolo_data import load_yolo_folder, read_label_file, write_sample_yolo
from apps.driving_perception.zones import ZoneMonitor, ZoneRule
from apps.medical_imaging.folders import list_class_folders, stratified_split, write_sample_folders
from apps.mobile_translation.mt_eval import chrf
from apps.mobile_translation.phrasebook import PhrasebookTranslator, normalise, read_pairs


@pytest.mark.parametrize("line, match", [
    ("0 0.5 0.5 0.2", "expected 'class cx cy w h'"),
    ("x 0.5 0.5 0.2 0.2", "expected 'class cx cy w h'"),
    ("3 0.5 0.5 0.2 0.2", "class in 0..1"),
    ("0 0.5 0.5 0.2 0.2 7", "5 fields"),
    ("0 50 50 20 20", "normalised"),
])
def test_yolo_label_errors_name_file_and_line(tmp_path, line, match):
    f = tmp_path / "a.txt"
    f.write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    with pytest.raises(ValueError, match=match) as e:
        read_label_file(f, 2, (100, 200))
    assert "a.txt:2" in str(e.value)


def test_yolo_labels_become_pixel_boxes(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("1 0.5 0.25 0.5 0.5\n")
    boxes, cls = read_label_file(f, 2, (100, 200))
    np.testing.assert_allclose(boxes, [[50, 0, 150, 50]])
    assert cls.tolist() == [1]


def test_sample_yolo_set_round_trips(tmp_path):
    items = load_yolo_folder(write_sample_yolo(tmp_path / "d", ["a", "b"], n_images=4), 2)
    assert len(items) == 4 and all(len(it.xyxy) >= 1 for it in items)
    with pytest.raises(FileExistsError):
        write_sample_yolo(tmp_path / "d", ["a", "b"], n_images=4)       # never over existing files


def test_class_folders_must_match_the_labels(tmp_path):
    write_sample_folders(tmp_path / "d", ["ok", "bad"], per_class=3, side=32)
    with pytest.raises(ValueError, match=r"lacks the class folders \['other'\]"):
        list_class_folders(tmp_path / "d", ["ok", "other"])
    assert len(list_class_folders(tmp_path / "d", ["ok", "bad"])) == 6


def test_stratified_split_keeps_every_class_in_both_parts():
    y = np.array([0] * 8 + [1] * 3)
    tr, va = stratified_split(y, 0.25, seed=0)
    assert set(y[tr]) == set(y[va]) == {0, 1} and len(tr) + len(va) == len(y)
    with pytest.raises(ValueError, match="at least 2"):
        stratified_split(np.array([0, 0, 1]), 0.25, seed=0)


def test_zone_rules_validate():
    with pytest.raises(ValueError, match="x0 < x1"):
        ZoneRule(name="z", classes=["a"], box=(0.5, 0, 0.4, 1))
    with pytest.raises(ValueError, match="not among the model's labels"):
        ZoneMonitor([ZoneRule(name="z", classes=["cat"])], ["a", "b"])


def test_phrasebook_pairs_and_normalisation(tmp_path):
    f = tmp_path / "p.tsv"
    f.write_text("# comment\nGood  morning\tBuenos días\n\nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="p.tsv:4"):
        read_pairs(f)
    pb = PhrasebookTranslator([("Good  morning", "Buenos días")], "en", "es")
    assert normalise("  GOOD morning!! ") == "good morning"
    assert pb.lookup("good morning?").text == "Buenos días" and pb.lookup("good night") is None


def test_chrf_matches_sacrebleu():
    sacrebleu = pytest.importorskip("sacrebleu")
    hyp = ["Buenos dias señor", "El hotel está cerca", "abc", ""]
    ref = ["Buenos días", "El hotel está lejos", "abd", "Hola"]
    assert chrf(hyp, ref) == pytest.approx(sacrebleu.corpus_chrf(hyp, [ref]).score, abs=1e-6)
