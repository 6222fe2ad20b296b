"""How far an INT8 model's output moves on an x86 CPU without VNNI, emulated on any machine.

There onnxruntime's u8 x s8 kernels multiply adjacent pairs along the reduction axis and sum
each pair in int16 with saturation (``vpmaddubsw``), then accumulate in int32; with 8-bit
weights a pair can pass 32767. This script runs the model in onnx's reference evaluator twice:
with exact integer ``MatMulInteger`` / ``ConvInteger`` (a check against onnxruntime here) and
with the pairs saturated as that kernel does (raw u8 activations, pairs (2m, 2m+1) of the
reduction axis in the natural order; the zero points are corrected afterwards, as MLAS does).
It prints the cosine of each against onnxruntime's output, of one against the other (the
effect), and the share of pair sums that saturated.

    python benchmarks/int8_saturation.py [--model encoder_model_quantized.onnx] [--windows 3] [--wer]

Default model: the Whisper tiny.en encoder INT8 export in ../shared; inputs: log-mel windows
of the LJSpeech files there. An emulation, not the kernel: it tells the size of the effect,
and it covers the integer ops of dynamically quantized models only (QLinearConv/QLinearMatMul
are not emulated).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("EDGEWISE_SHARED", REPO.parent / "shared"))
DEFAULT = SHARED / "models" / "whisper-tiny.en" / "onnx" / "encoder_model_quantized.onnx"

STATS = {"pairs": 0, "saturated": 0}


def pair_gemm(a: np.ndarray, b: np.ndarray, saturate: bool) -> np.ndarray:
    """Raw ``a`` (M x K, u8 values) @ ``b`` (K x N, s8) in int32; with ``saturate`` each pair of
    adjacent K terms is clipped to int16 first."""
    a32, b32 = a.astype(np.int32), b.astype(np.int32)
    if not saturate:
        return a32 @ b32
    k = a32.shape[1]
    if k % 2:
        a32, b32 = np.pad(a32, ((0, 0), (0, 1))), np.pad(b32, ((0, 1), (0, 0)))
    out = np.zeros((a32.shape[0], b32.shape[1]), np.int64)
    for m in range(0, a32.shape[1], 2):
        s = np.outer(a32[:, m], b32[m]) + np.outer(a32[:, m + 1], b32[m + 1])
        clipped = np.clip(s, -32768, 32767)
        STATS["pairs"] += s.size
        STATS["saturated"] += int(np.count_nonzero(clipped != s))
        out += clipped
    return out.astype(np.int32)


def zp_corrected(a: np.ndarray, b: np.ndarray, a_zp, b_zp, raw: np.ndarray) -> np.ndarray:
    """(a - a_zp) @ (b - b_zp) from the raw product, as MLAS corrects it."""
    a_zp = 0 if a_zp is None else int(np.asarray(a_zp).reshape(-1)[0])
    b_zp = np.zeros(b.shape[1], np.int32) if b_zp is None else np.broadcast_to(
        np.asarray(b_zp, np.int32).reshape(-1), (b.shape[1],))
    k = a.shape[1]
    out = raw.astype(np.int64)
    out -= a_zp * b.astype(np.int64).sum(0)[None, :]
    out -= a.astype(np.int64).sum(1)[:, None] * b_zp[None, :]
    out += k * a_zp * b_zp[None, :].astype(np.int64)
    return out.astype(np.int32)


def make_ops(saturate: bool):
    from onnx.reference.op_run import OpRun

    class MatMulInteger(OpRun):
        op_domain = ""

        def _run(self, A, B, a_zero_point=None, b_zero_point=None):
            lead = A.shape[:-1]
            a2 = A.reshape(-1, A.shape[-1])
            raw = pair_gemm(a2, B, saturate)
            return (zp_corrected(a2, B, a_zero_point, b_zero_point, raw).reshape(*lead, B.shape[1]),)

    class ConvInteger(OpRun):
        op_domain = ""

        def _run(self, x, w, x_zero_point=None, w_zero_point=None, **_):
            if x.ndim != 3:
                raise NotImplementedError("only 1-D ConvInteger (Whisper's stem) is emulated")
            pads = list(self.pads or [0, 0])
            stride = (self.strides or [1])[0]
            dil = (self.dilations or [1])[0]
            if int(self.group or 1) != 1:
                raise NotImplementedError("grouped ConvInteger")
            zp = 0 if x_zero_point is None else int(np.asarray(x_zero_point).reshape(-1)[0])
            xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[1])), constant_values=zp)
            m, c, ks = w.shape
            length = (xp.shape[2] - dil * (ks - 1) - 1) // stride + 1
            idx = np.arange(length)[None, :] * stride + np.arange(ks)[:, None] * dil     # ks x L
            outs = []
            for n in range(x.shape[0]):
                cols = xp[n][:, idx].reshape(c * ks, length)            # K = (c, kk), as the weight flattens
                wk = w.reshape(m, c * ks).T                             # K x M
                raw = pair_gemm(cols.T, wk, saturate)                   # L x M
                outs.append(zp_corrected(cols.T, wk, zp, w_zero_point, raw).T)
            return (np.stack(outs),)

    return [MatMulInteger, ConvInteger]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEFAULT)
    ap.add_argument("--windows", type=int, default=3, help="30 s log-mel windows (one per LJSpeech file)")
    ap.add_argument("--wer", action="store_true",
                    help="also transcribe the 22 LJSpeech files with each encoder (a Whisper export folder's)")
    args = ap.parse_args(argv)
    if not args.model.is_file():
        print(f"model not found: {args.model}", file=sys.stderr)
        return 2
    import onnx
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    from sdk.compress.audio_calib import encoder_feeds
    from sdk.runtime import discover_device
    from sdk.runtime.int8_weights import int8_weight_peak

    model = onnx.load(str(args.model))
    files = sorted((SHARED / "data" / "speech" / "ljspeech").glob("*.wav"))[:args.windows]
    feeds = encoder_feeds(args.model, files)
    print(f"{args.model.name}: INT8 weight peak {int8_weight_peak(model)}; {len(feeds)} window(s); "
          f"onnxruntime here: {discover_device().summary()}")
    sess = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    ort_out = [sess.run(None, f)[0] for f in feeds]
    out, share = {}, {}
    for saturate in (False, True):
        ev = ReferenceEvaluator(model, new_ops=make_ops(saturate))
        STATS.update(pairs=0, saturated=0)
        out[saturate] = [ev.run(None, f)[0] for f in feeds]
        share[saturate] = STATS["saturated"] / STATS["pairs"] if STATS["pairs"] else 0.0

    def row(name: str, a: list, b: list, sat: float | None = None) -> None:
        cos = [cosine(x, y) for x, y in zip(a, b, strict=True)]
        rel = max(float(np.abs(x - y).max() / np.abs(y).max()) for x, y in zip(a, b, strict=True))
        print(f"{name:<52} {min(cos):>10.6f} {float(np.mean(cos)):>10.6f} {rel:>10.2e}"
              + (f" {sat:>10.2e}" if sat is not None else ""))

    print(f"{'output compared':<52} {'cos min':>10} {'cos mean':>10} {'max rel':>10} {'saturated':>10}")
    row("exact int32 emulation vs onnxruntime here", out[False], ort_out, share[False])
    row("saturating (AVX2, no VNNI) emulation vs onnxruntime", out[True], ort_out, share[True])
    row("saturating vs exact emulation: the effect", out[True], out[False])
    if args.wer:
        wer_rows(args.model, model)
    return 0


def wer_rows(encoder: Path, model) -> None:
    """WER on the 22 LJSpeech files with the encoder run by onnxruntime, by the exact emulation
    and by the saturating one (the decoder is onnxruntime's in all three; greedy)."""
    import csv
    import logging

    import jiwer
    from onnx.reference import ReferenceEvaluator
    from whisper_normalizer.english import EnglishTextNormalizer

    from apps.mobile_translation.asr.whisper_onnx import WhisperOnnxRecognizer
    from sdk.preprocess.audio import load_audio

    logging.getLogger("edgewise").setLevel(logging.ERROR)
    lj = SHARED / "data" / "speech" / "ljspeech"
    refs = [(r[0], r[1]) for r in csv.reader((lj / "transcripts.tsv").open(encoding="utf-8"), delimiter="\t")
            if r and r[0] != "id"]
    norm = EnglishTextNormalizer()
    rec = WhisperOnnxRecognizer(encoder.parent.parent, num_beams=1, quantized=True)
    ort_encode = rec.encode
    modes = {"onnxruntime": ort_encode}
    for saturate in (False, True):
        ev = ReferenceEvaluator(model, new_ops=make_ops(saturate))
        modes["saturating" if saturate else "exact"] = (
            lambda audio, ev=ev: ev.run(None, {"input_features": rec.features(audio)})[0])
    hyps: dict[str, list[str]] = {m: [] for m in modes}
    for rid, _ in refs:
        audio = load_audio(lj / f"{rid}.wav", 16000)
        for name, fn in modes.items():
            rec.encode = fn
            hyps[name].append(norm(rec.transcribe(audio).text))
    rec.encode = ort_encode
    truth = [norm(t) for _, t in refs]
    print(f"\nWER on {len(refs)} LJSpeech files, greedy, decoder by onnxruntime:")
    for name, h in hyps.items():
        changed = sum(a != b for a, b in zip(h, hyps["exact"], strict=True))
        print(f"  encoder {name:<12} WER {jiwer.wer(truth, h):.4f}   transcripts differing from exact: {changed}")


if __name__ == "__main__":
    raise SystemExit(main())
