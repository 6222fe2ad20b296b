"""The translation template with a model in its placeholder: a tiny Marian export (random
weights, built by tests/translation/tiny_seq2seq.py) answers what the phrasebook lacks."""
from __future__ import annotations

import json
import sys

import pytest
from readme_commands import REPO

from sdk.templates import generate, get_template

sys.path.insert(0, str(REPO / "tests" / "translation"))   # tiny_seq2seq


@pytest.fixture(scope="module")
def app_with_model(tmp_path_factory):
    pytest.importorskip("torch", reason="the tiny Marian export is built with PyTorch (edgewise[train])")
    pytest.importorskip("sentencepiece", reason="Marian tokenizers need sentencepiece (edgewise[speech])")
    import tiny_seq2seq as ts

    project = generate(get_template("mobile_translation"), "desk_app", tmp_path_factory.mktemp("gen"))
    model = project / "desk_app" / "bundles" / "model"
    ts.build("marian", model, ts.marian_vocab(model, ["where is the hospital please", "thank you very much"] * 4))
    return project


def test_chain_falls_back_to_the_model(app_with_model, run_commands):
    r = run_commands(['python -m desk_app translate "where is the hospital" --json',
                      'python -m desk_app translate "Good morning!" --json'], app_with_model)
    first, second = (json.loads(x.stdout) for x in r)
    assert first["engine"] == "marian-onnx" and isinstance(first["text"], str)
    assert second == {"source": "Good morning!", "text": "Buenos días", "engine": "phrasebook"}


def test_evaluate_with_the_model_has_no_errors(app_with_model, run_commands):
    r = run_commands(["python -m desk_app sample-data eval.tsv",
                      "python -m desk_app evaluate eval.tsv --json --min-chrf 0"], app_with_model)
    report = json.loads(r[1].stdout)
    assert report["errors"] == 0 and report["by_engine"] == {"phrasebook": 4, "marian-onnx": 1}
