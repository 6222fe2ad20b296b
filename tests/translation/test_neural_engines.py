"""Whisper and Marian decoding (greedy, beam, KV cache) on tiny models with the Optimum layout."""
from __future__ import annotations

import http.server
import threading

import numpy as np
import onnx
import pytest

from apps.mobile_translation.seq2seq import GenerationConfig, KVDecoder


@pytest.fixture(scope="module")
def whisper(tiny_whisper):
    from apps.mobile_translation.asr.whisper_onnx import WhisperOnnxRecognizer

    r = WhisperOnnxRecognizer(tiny_whisper, max_new_tokens=12)
    yield r
    r.close()


@pytest.fixture(scope="module")
def enc_out(whisper):
    a = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    return whisper.encoder.run_list({"input_features": whisper.features(a)})[0]


def _gen(dec, enc, prompt, eos, mask=None, **kw):
    dec.calls = {"no_past": 0, "with_past": 0}
    return dec.generate(enc, mask, prompt, eos, GenerationConfig(**kw))


def test_merged_decoder_signature(tiny_whisper):
    m = onnx.load(tiny_whisper / "decoder_model_merged.onnx")
    names = [i.name for i in m.graph.input]
    assert names[:2] == ["input_ids", "encoder_hidden_states"] and names[-1] == "use_cache_branch"
    assert "past_key_values.1.encoder.value" in names and "past_key_values.0.decoder.key" in names
    outs = [o.name for o in m.graph.output]
    assert outs[0] == "logits" and "present.1.decoder.value" in outs and "present.0.encoder.key" in outs
    assert m.graph.node[0].op_type == "If"


@pytest.mark.parametrize("beams", [1, 3])
def test_cache_matches_full_recompute(whisper, enc_out, beams):
    dec = whisper.decoder
    cached = _gen(dec, enc_out, whisper.prompt, -1, max_new_tokens=10, num_beams=beams)
    calls = dict(dec.calls)
    full = _gen(dec, enc_out, whisper.prompt, -1, max_new_tokens=10, num_beams=beams, use_cache=False)
    assert cached == full and len(cached) == 10  # max length honoured (no EOS id)
    assert calls["no_past"] == 1 and calls["with_past"] >= 9   # the with-past branch after step 0
    assert dec.calls["with_past"] == 0 and dec.calls["no_past"] >= 10


def test_eos_stops_and_is_not_returned(whisper, enc_out):
    dec = whisper.decoder
    free = _gen(dec, enc_out, whisper.prompt, -1, max_new_tokens=10)
    eos = free[4]
    stopped = _gen(dec, enc_out, whisper.prompt, eos, max_new_tokens=10)
    assert stopped == free[: free.index(eos)]


def test_beam_search_scores_at_least_greedy(whisper, enc_out):
    from apps.mobile_translation.seq2seq import _log_softmax

    dec = whisper.decoder

    def score(tokens):
        logits, _ = dec.first_step(np.array([whisper.prompt + tokens], np.int64), enc_out, None)
        lp = _log_softmax(logits[0])
        n = len(whisper.prompt)
        return sum(lp[n - 1 + i, t] for i, t in enumerate(tokens))

    greedy = _gen(dec, enc_out, whisper.prompt, -1, max_new_tokens=6)
    beam = _gen(dec, enc_out, whisper.prompt, -1, max_new_tokens=6, num_beams=4)
    assert len(beam) == 6 and score(beam) >= score(greedy) - 1e-4


def test_suppressed_tokens_never_generated(whisper, enc_out):
    dec = whisper.decoder
    free = _gen(dec, enc_out, whisper.prompt, -1, max_new_tokens=8)
    banned = sorted(set(free))[:3]
    out = _gen(dec, enc_out, whisper.prompt, -1, max_new_tokens=8, suppress_ids=banned, num_beams=2)
    assert not set(out) & set(banned)
    first = _gen(dec, enc_out, whisper.prompt, -1, max_new_tokens=3, begin_suppress_ids=[free[0]])
    assert first[0] != free[0]


def test_whisper_recognizer_end_to_end(whisper, speak):
    assert whisper.prompt == [257, 258, 260, 261]  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|>
    feats = whisper.features(np.zeros(8000, np.float32))
    assert feats.shape == (1, 80, 3000) and feats.dtype == np.float32
    t = whisper.transcribe(speak("hello there", voice="en"))
    assert t.audio_s > 0.5 and t.compute_s > 0
    assert whisper.decoder.calls["no_past"] >= 1
    # special tokens are suppressed and never reach the text
    assert "<|" not in t.text
    with pytest.raises(ValueError, match="language token"):
        type(whisper)(whisper.folder, lang="xx")


def test_bpe_decoder_round_trip(tiny_whisper):
    from apps.mobile_translation.bpe import ByteLevelBPEDecoder, _bytes_to_unicode

    tok = ByteLevelBPEDecoder.from_dir(tiny_whisper)
    table = _bytes_to_unicode()
    text = "¿Dónde está? ok"
    ids = [tok.token_id(table[b]) for b in text.encode("utf-8")]
    assert tok.decode(ids + [256]) == text                # <|endoftext|> skipped
    assert "<|endoftext|>" in tok.decode([256], skip_special=False)


@pytest.mark.parametrize("layout", ["merged", "split"])
def test_marian_translator_layouts_agree(tiny_marian, layout):
    from apps.mobile_translation.mt.marian_onnx import MarianOnnxTranslator

    ref = MarianOnnxTranslator(tiny_marian["split"], max_new_tokens=12, use_cache=False)
    tr = MarianOnnxTranslator(tiny_marian[layout], max_new_tokens=12)
    try:
        text = "where is the doctor"
        ids = tr.tokenizer.encode(text)
        assert ids[-1] == tr.tokenizer.eos_id and tr.tokenizer.unk_id not in ids
        a, b = tr.translate(text), ref.translate(text)
        assert a.text == b.text and a.text  # cache == recompute, merged == split
        assert tr.decoder.calls["with_past"] > 0 and ref.decoder.calls["with_past"] == 0
        assert tr.tokenizer.decoder_start_id == tr.tokenizer.pad_id
        assert tr.translate("  ").text == ""
        beam = MarianOnnxTranslator(tiny_marian[layout], max_new_tokens=12, num_beams=3)
        assert isinstance(beam.translate(text).text, str)
        beam.close()
    finally:
        tr.close()
        ref.close()


def test_marian_pad_never_generated(tiny_marian):
    from apps.mobile_translation.mt.marian_onnx import MarianOnnxTranslator

    with MarianOnnxTranslator(tiny_marian["merged"], max_new_tokens=15) as tr:
        ids = np.array([tr.tokenizer.encode("thank you")], np.int64)
        enc = tr.encoder.run_list({"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
        out = tr.decoder.generate(enc, np.ones_like(ids), [tr.tokenizer.pad_id], -1, tr.gen)
        assert len(out) == 15 and tr.tokenizer.pad_id not in out


def test_not_an_export_is_refused(tmp_path):
    from apps.mobile_translation.mt.marian_onnx import MarianOnnxTranslator
    from sdk.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="encoder_model.onnx"):
        MarianOnnxTranslator(tmp_path)
    with pytest.raises(ValueError):
        KVDecoder()


def test_int8_through_compress_toolkit(tiny_whisper, tmp_path, whisper, enc_out):
    import shutil

    from apps.mobile_translation.asr.whisper_onnx import WhisperOnnxRecognizer
    from apps.mobile_translation.int8 import quantize_export

    d = tmp_path / "w"
    shutil.copytree(tiny_whisper, d)
    done = quantize_export(d)
    assert set(map(lambda p: p.split("/")[-1], done.values())) == {"encoder_model_int8.onnx",
                                                                   "decoder_model_merged_int8.onnx"}
    m = onnx.load(d / "decoder_model_merged_int8.onnx")
    for branch in m.graph.node[0].attribute:  # both decoders inside the If are quantized
        ops = [n.op_type for n in branch.g.node]
        assert ops.count("MatMulInteger") >= 8, (branch.name, ops.count("MatMul"))
    int8_weights = [i for i in m.graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 16  # the shared weights were stored as INT8
    with WhisperOnnxRecognizer(d, quantized=True, max_new_tokens=6) as q:
        assert q.decoder.merged.model_path.name == "decoder_model_merged_int8.onnx"
        e = q.encoder.run_list({"input_features": whisper.features(np.zeros(1600, np.float32))})[0]
        assert len(q.decoder.generate(e, None, q.prompt, -1, q.gen)) == 6



def test_int4_through_compress_toolkit_reaches_the_if_branches(tiny_whisper, tmp_path, whisper):
    import shutil

    from apps.mobile_translation.asr.whisper_onnx import WhisperOnnxRecognizer
    from apps.mobile_translation.int8 import quantize_export
    from sdk.graphs import count_ops_deep

    d = tmp_path / "w"
    shutil.copytree(tiny_whisper, d)
    done = quantize_export(d, bits=4, block_size=16)
    assert sorted(p.split("/")[-1] for p in done.values()) == ["decoder_model_merged_int4.onnx",
                                                                "encoder_model_int4.onnx"]
    m = onnx.load(d / "decoder_model_merged_int4.onnx")
    branches = [a.g for a in m.graph.node[-1].attribute] if m.graph.node[-1].op_type == "If" else \
        [a.g for n in m.graph.node if n.op_type == "If" for a in n.attribute]
    assert len(branches) == 2
    inits = {i.name for i in m.graph.initializer}
    for g in branches:      # every MatMul on a constant weight in both decoders became MatMulNBits
        ops = [n.op_type for n in g.node]
        assert ops.count("MatMulNBits") >= 8, (g.name, ops.count("MatMul"))
        assert not [n for n in g.node if n.op_type == "MatMul" and n.input[1] in inits]
    # the tiny encoder is convolutions only: nothing to pack, so its _int4 file is the float one
    assert count_ops_deep(onnx.load(d / "encoder_model.onnx"))["MatMul"] == 0
    assert (d / "encoder_model_int4.onnx").read_bytes() == (d / "encoder_model.onnx").read_bytes()
    with WhisperOnnxRecognizer(d, quantized="int4", max_new_tokens=6) as q:
        assert q.decoder.merged.model_path.name == "decoder_model_merged_int4.onnx"
        e = q.encoder.run_list({"input_features": whisper.features(np.zeros(1600, np.float32))})[0]
        assert len(q.decoder.generate(e, None, q.prompt, -1, q.gen)) == 6


def test_quantize_refuses_an_int8_only_folder(tmp_path):
    from apps.mobile_translation.int8 import quantize_export
    from sdk.errors import ModelLoadError

    (tmp_path / "onnx").mkdir()
    for stem in ("encoder_model", "decoder_model_merged"):
        (tmp_path / "onnx" / f"{stem}_quantized.onnx").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="only quantized files"):
        quantize_export(tmp_path, bits=4)


@pytest.fixture
def http_dir():
    """Serve a folder on 127.0.0.1; yields (folder setter, base URL)."""
    state = {}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(state["dir"]), **kw)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield state, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_pull_and_load_through_model_store(tiny_whisper, http_dir, tmp_path):
    from apps.mobile_translation.asr.whisper_onnx import WhisperOnnxRecognizer
    from sdk.bundle import ModelStore, file_sha256
    from sdk.errors import StoreError

    state, base = http_dir
    state["dir"] = tiny_whisper
    files = [{"relpath": f, "url": f"{base}/{f}", "sha256": file_sha256(tiny_whisper / f)}
             for f in ("encoder_model.onnx", "decoder_model_merged.onnx", "tokenizer.json")]
    catalog = {"models": [{"name": "whisper-tiny-test", "files": files, "licence": "test"}]}
    store = ModelStore(cache_dir=tmp_path / "cache", catalog=catalog)
    with pytest.raises(StoreError, match="edgewise pull"):
        WhisperOnnxRecognizer("whisper-tiny-test", store=store)    # nothing is downloaded implicitly
    folder = store.pull("whisper-tiny-test", progress=False)
    assert (folder / "decoder_model_merged.onnx").is_file()
    with WhisperOnnxRecognizer("whisper-tiny-test", store=store, max_new_tokens=4) as r:
        assert r.folder == folder
        assert len(r.decoder.generate(r.encoder.run_list({"input_features": r.features(np.zeros(1600, np.float32))})[0],
                                      None, r.prompt, -1, r.gen)) == 4


@pytest.mark.shared
def test_whisper_features_match_reference_filterbank(whisper, shared_dir, speak):
    """The encoder input equals Whisper's own recipe computed with its published mel filters."""
    ref_path = shared_dir / "data" / "speech" / "whisper_mel_filters.npz"
    if not ref_path.is_file():
        pytest.skip(f"{ref_path} not found")
    filters = np.load(ref_path, allow_pickle=False)["mel_80"]
    audio = np.zeros(480000, np.float32)
    s = speak("the doctor will see you now")
    audio[: len(s)] = s
    padded = np.pad(audio, 200, mode="reflect")
    n = 1 + (len(padded) - 400) // 160
    frames = np.lib.stride_tricks.as_strided(padded, (n, 400), (padded.strides[0] * 160, padded.strides[0]))
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)   # periodic Hann, like torch
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mel = filters @ power[:-1].T                                    # Whisper drops the last frame
    log = np.log10(np.maximum(mel, 1e-10))
    ref = (np.maximum(log, log.max() - 8.0) + 4.0) / 4.0
    got = whisper.features(audio)[0]
    assert got.shape == ref.shape == (80, 3000)
    assert np.abs(got - ref).max() < 2e-3
