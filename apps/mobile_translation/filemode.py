"""File mode: a WAV in → transcript and translation with timestamps (JSON + SRT) and a WAV out.

The recording is cut into utterances by the same VAD + end-pointing as the live mode, so
each subtitle covers one utterance, and each is recognised, translated and synthesized.
Outputs in ``out_dir``: ``<stem>.json``, ``<stem>.<src>.srt``, ``<stem>.<tgt>.srt``,
``<stem>.<tgt>.wav`` (the synthesized translation, utterances separated by short pauses).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from apps.mobile_translation.asr.base import SAMPLE_RATE
from apps.mobile_translation.audio_io import read_audio_16k, write_audio
from apps.mobile_translation.endpoint import EndpointConfig, Endpointer, Utterance
from apps.mobile_translation.vad import CHUNK, SileroVAD

GAP_S = 0.4  # silence between synthesized utterances


@dataclass
class UtteranceResult:
    start: float
    end: float
    text: str
    translation: str
    words: list[dict] = field(default_factory=list)
    asr_s: float = 0.0
    mt_s: float = 0.0
    tts_s: float = 0.0


@dataclass
class FileResult:
    source: str
    src: str
    tgt: str
    engines: dict[str, str]
    audio_s: float
    utterances: list[UtteranceResult]
    outputs: dict[str, str]
    timings: dict[str, float]

    @property
    def transcript(self) -> str:
        return " ".join(u.text for u in self.utterances if u.text)

    @property
    def translation(self) -> str:
        return " ".join(u.translation for u in self.utterances if u.translation)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["transcript"], d["translation"] = self.transcript, self.translation
        return d


def segment(audio_16k: np.ndarray, vad: SileroVAD | None, cfg: EndpointConfig | None = None) -> list[Utterance]:
    """Utterances of a whole recording (one utterance for all of it when ``vad`` is None)."""
    if vad is None:
        return [Utterance(audio_16k, 0.0, len(audio_16k) / SAMPLE_RATE, False, len(audio_16k) / SAMPLE_RATE)]
    vad.reset()
    ep = Endpointer(cfg or EndpointConfig(max_utterance_s=25.0))
    out: list[Utterance] = []
    n = len(audio_16k) // CHUNK
    for i in range(n):
        chunk = audio_16k[i * CHUNK:(i + 1) * CHUNK]
        out += ep.push(vad(chunk), chunk)
    tail = audio_16k[n * CHUNK:]
    if len(tail):
        out += ep.push(0.0, np.pad(tail, (0, CHUNK - len(tail))))
    return out + ep.flush()


def _srt_time(t: float) -> str:
    ms = int(round(max(t, 0.0) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def to_srt(items: list[tuple[float, float, str]]) -> str:
    blocks = [f"{i}\n{_srt_time(a)} --> {_srt_time(b)}\n{text}\n" for i, (a, b, text) in
              enumerate(((a, b, t) for a, b, t in items if t), start=1)]
    return "\n".join(blocks)


def translate_file(in_wav: str | Path, out_dir: str | Path, engines, vad: SileroVAD | None = None,
                   endpoint: EndpointConfig | None = None, use_vad: bool = True) -> FileResult:
    """Run the whole chain on ``in_wav``; ``engines`` is an :class:`~apps.mobile_translation.engines.Engines`."""
    in_wav, out_dir = Path(in_wav), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    audio, _sr = read_audio_16k(in_wav)
    own_vad = None
    if use_vad and vad is None:
        vad = own_vad = SileroVAD()
    t_all = time.perf_counter()  # processing time, without reading the file or loading the VAD
    try:
        t0 = time.perf_counter()
        utts = segment(audio, vad if use_vad else None, endpoint)
        vad_s = time.perf_counter() - t0
    finally:
        if own_vad is not None:
            own_vad.close()
    results: list[UtteranceResult] = []
    speech: list[np.ndarray] = []
    tts_sr = engines.tts.sample_rate
    for u in utts:
        tr = engines.asr.transcribe(u.audio)
        words = [{"word": s.text, "start": round(u.start_s + s.start, 3), "end": round(u.start_s + s.end, 3)}
                 for s in tr.segments]
        mt = engines.mt.translate(tr.text) if tr.text else None
        sp = engines.tts.synthesize(mt.text) if mt and mt.text else None
        if sp is not None and len(sp.audio):
            speech += [sp.audio, np.zeros(int(GAP_S * tts_sr), np.float32)]
        results.append(UtteranceResult(round(u.start_s, 3), round(u.end_s, 3), tr.text, mt.text if mt else "",
                                       words, tr.compute_s, mt.compute_s if mt else 0.0,
                                       sp.seconds_to_synthesize if sp else 0.0))
    stem, cfg = in_wav.stem, engines.cfg
    outputs = {
        "json": out_dir / f"{stem}.json",
        "srt_source": out_dir / f"{stem}.{cfg.src}.srt",
        "srt_target": out_dir / f"{stem}.{cfg.tgt}.srt",
        "wav": out_dir / f"{stem}.{cfg.tgt}.wav",
    }
    outputs["srt_source"].write_text(to_srt([(r.start, r.end, r.text) for r in results]), encoding="utf-8")
    outputs["srt_target"].write_text(to_srt([(r.start, r.end, r.translation) for r in results]), encoding="utf-8")
    write_audio(outputs["wav"], np.concatenate(speech) if speech else np.zeros(0, np.float32), tts_sr)
    audio_s = len(audio) / SAMPLE_RATE
    timings = {"vad_s": vad_s, "asr_s": sum(r.asr_s for r in results), "mt_s": sum(r.mt_s for r in results),
               "tts_s": sum(r.tts_s for r in results), "total_s": time.perf_counter() - t_all}
    timings["rtf"] = timings["total_s"] / audio_s if audio_s else 0.0
    res = FileResult(str(in_wav), cfg.src, cfg.tgt, {"asr": cfg.asr, "mt": cfg.mt, "tts": cfg.tts}, audio_s,
                     results, {k: str(v) for k, v in outputs.items()}, {k: round(v, 4) for k, v in timings.items()})
    outputs["json"].write_text(json.dumps(res.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    return res
