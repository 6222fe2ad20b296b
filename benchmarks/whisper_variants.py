"""Helpers for the Whisper compression benchmark: the FP32 reference rebuilt from the shipped
INT8 files, export folders that mix an optimized encoder or decoder with the shipped files, and
WER / RTF of the full Whisper pipeline (the translation app's recogniser) on LJ Speech files.

The reference (``rebuild_reference``): ``../shared/models/whisper-tiny.en`` ships only the
dynamic-INT8 files, and the FP32 export recipe needs the network. ``sdk.compress.dequantize``
rewrites every MatMulInteger/ConvInteger chain into a float MatMul/Conv whose weight is
``(W_q - zero_point) * scale``: an FP32 model whose weights lie on the shipped file's int8 grid.
It is the float model the shipped INT8 file approximates, not OpenAI's FP32 weights (each weight
differs from those by up to half an int8 step).
"""
from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path

SUPPORT_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json",
                 "merges.txt", "added_tokens.json", "special_tokens_map.json", "preprocessor_config.json")


def rebuild_reference(model_dir: Path, work: Path) -> dict[str, Path]:
    """{"encoder", "decoder"}: FP32 files dequantized from the shipped INT8 ones (made once)."""
    from sdk.compress.dequantize import dequantize_file

    out = {}
    for role, stem in (("encoder", "encoder_model"), ("decoder", "decoder_model_merged")):
        dst = work / "reference" / f"{stem}.onnx"
        if not dst.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dequantize_file(model_dir / "onnx" / f"{stem}_quantized.onnx", dst)
        out[role] = dst
    return out


def variant_folder(model_dir: Path, work: Path, name: str, encoder: Path, decoder: Path) -> Path:
    """An export folder (symlinks) with this encoder and decoder and the shipped tokenizer/configs."""
    d = work / "variants" / name
    (d / "onnx").mkdir(parents=True, exist_ok=True)
    links = {f: model_dir / f for f in SUPPORT_FILES if (model_dir / f).is_file()}
    links.update({"onnx/encoder_model.onnx": encoder, "onnx/decoder_model_merged.onnx": decoder})
    for rel, target in links.items():
        p = d / rel
        if p.is_symlink() or p.exists():
            p.unlink()
        os.symlink(Path(target).resolve(), p)
    return d


def transcripts(lj_dir: Path) -> dict[str, str]:
    with open(lj_dir / "transcripts.tsv", encoding="utf-8") as f:
        return {r["id"]: r["text"] for r in csv.DictReader(f, delimiter="\t")}


def wer_rtf(folder: Path, files: list[Path], refs: dict[str, str], beams: int = 1, threads: int | None = None,
            quantized: bool | str | None = None) -> dict[str, float]:
    """WER (Whisper's English normalizer + jiwer) and RTF of the app's recogniser on ``files``."""
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    from apps.mobile_translation.asr.whisper_onnx import WhisperOnnxRecognizer
    from sdk.preprocess import load_audio

    logging.getLogger("edgewise").setLevel(logging.ERROR)
    norm = EnglishTextNormalizer()
    hyps, gold, audio_s, proc_s = [], [], 0.0, 0.0
    with WhisperOnnxRecognizer(folder, num_beams=beams, quantized=quantized, threads=threads) as asr:
        asr.warm_up()
        for f in files:
            audio = load_audio(f, 16000)
            t0 = time.perf_counter()
            text = asr.transcribe(audio).text
            proc_s += time.perf_counter() - t0
            audio_s += len(audio) / 16000
            hyps.append(norm(text))
            gold.append(norm(refs[f.stem]))
    return {"wer": round(float(jiwer.wer(gold, hyps)), 4), "rtf": round(proc_s / audio_s, 3), "files": len(files)}
