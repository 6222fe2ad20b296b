"""File mode: a WAV in → transcript and translation with timestamps (JSON + SRT) and a WAV out.

Segmentation serves the recogniser:

- **Whisper** (a recogniser with ``long_form = True``) gets long windows: the VAD finds the
  speech, each region is padded by ``pad_s`` and neighbouring regions are merged into
  groups of up to ``group_s`` seconds, so a short phrase is heard with its context instead
  of alone. Whisper cuts each group into timestamped segments itself; each segment is one
  subtitle. Silence between groups is never decoded (no text on silence or noise).
- **PocketSphinx** gets the live mode's utterances (VAD + end-pointing).

Outputs in ``out_dir``: ``<stem>.json``, ``<stem>.<src>.srt``, ``<stem>.<tgt>.srt``,
``<stem>.<tgt>.wav``. The JSON and SRT files are rewritten (atomically) after every
finished piece, so an interrupted run (Ctrl-C) leaves valid files of what is done, with
``"complete": false`` in the JSON.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from apps.mobile_translation.asr.base import SAMPLE_RATE, Segment
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
    notes: list[str] = field(default_factory=list)
    complete: bool = True

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


def speech_groups(probs: np.ndarray, n_samples: int, threshold: float = 0.5, neg_threshold: float = 0.35,
                  min_speech_chunks: int = 2, pad_s: float = 0.4, group_s: float = 28.0,
                  max_gap_s: float = 3.0) -> list[tuple[int, int]]:
    """Sample ranges [start, end) to decode: padded speech regions merged into groups ≤ ``group_s``.

    A region starts at ``threshold`` and continues while the probability stays above
    ``neg_threshold``; regions with fewer than ``min_speech_chunks`` chunks are noise.
    Neighbours closer than ``max_gap_s`` are merged while the group stays ≤ ``group_s``.
    """
    regions, start = [], None
    for i, p in enumerate(np.asarray(probs, np.float32)):
        if start is None and p >= threshold:
            start = i
        elif start is not None and p < neg_threshold:
            regions.append((start, i))
            start = None
    if start is not None:
        regions.append((start, len(probs)))
    pad = int(pad_s * SAMPLE_RATE)
    spans = [(max(0, a * CHUNK - pad), min(n_samples, b * CHUNK + pad)) for a, b in regions
             if b - a >= min_speech_chunks]
    groups: list[list[int]] = []
    for a, b in spans:
        if groups and a - groups[-1][1] <= max_gap_s * SAMPLE_RATE and b - groups[-1][0] <= group_s * SAMPLE_RATE:
            groups[-1][1] = max(groups[-1][1], b)
        elif groups and a <= groups[-1][1]:  # overlapping padding but the group is full: cut between them
            mid = (groups[-1][1] + a) // 2
            groups[-1][1] = mid
            groups.append([mid, b])
        else:
            groups.append([a, b])
    return [(a, b) for a, b in groups if b > a]


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


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class _Writer:
    """Rewrites the JSON and SRT views of the results so far."""

    def __init__(self, res: FileResult, paths: dict[str, Path]):
        self.res, self.paths = res, paths

    def flush(self) -> None:
        r = self.res
        _write_atomic(self.paths["srt_source"], to_srt([(u.start, u.end, u.text) for u in r.utterances]))
        if r.tgt != r.src:
            _write_atomic(self.paths["srt_target"], to_srt([(u.start, u.end, u.translation) for u in r.utterances]))
        _write_atomic(self.paths["json"], json.dumps(r.to_dict(), indent=2, ensure_ascii=False))


def _pieces(audio, engines, vad, endpoint, use_vad):
    """(start_s, transcript) for each piece the recogniser decodes, in order."""
    asr = engines.asr
    if not use_vad or vad is None:
        yield 0.0, asr.transcribe(audio)
        return
    if getattr(asr, "long_form", False):
        vad.reset()
        probs = vad.probabilities(np.pad(audio, (0, (-len(audio)) % CHUNK)))
        for a, b in speech_groups(probs, len(audio)):
            yield a / SAMPLE_RATE, asr.transcribe(audio[a:b])
        return
    for u in segment(audio, vad, endpoint):
        yield u.start_s, asr.transcribe(u.audio)


def translate_file(in_wav: str | Path, out_dir: str | Path, engines, vad: SileroVAD | None = None,
                   endpoint: EndpointConfig | None = None, use_vad: bool = True) -> FileResult:
    """Run the whole chain on ``in_wav``; ``engines`` is an :class:`~apps.mobile_translation.engines.SpeechStack`."""
    in_wav, out_dir = Path(in_wav), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} exists and is not a folder; give a folder for the outputs")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the output folder {out_dir}: {exc}") from exc
    audio, _sr = read_audio_16k(in_wav)
    own_vad = None
    if use_vad and vad is None:
        vad = own_vad = SileroVAD()
    cfg = engines.cfg
    plan = getattr(engines, "plan", None)
    described = plan.describe() if plan else {"asr": cfg.asr, "mt": cfg.mt, "tts": cfg.tts}
    stem = in_wav.stem
    paths = {"json": out_dir / f"{stem}.json", "srt_source": out_dir / f"{stem}.{cfg.src}.srt",
             "srt_target": out_dir / f"{stem}.{cfg.tgt}.srt", "wav": out_dir / f"{stem}.{cfg.tgt}.wav"}
    if cfg.tgt == cfg.src:
        del paths["srt_target"]
    audio_s = len(audio) / SAMPLE_RATE
    res = FileResult(str(in_wav), cfg.src, cfg.tgt, described, round(audio_s, 3), [],
                     {k: str(v) for k, v in paths.items()}, {}, list(plan.notes) if plan else [], complete=False)
    writer = _Writer(res, paths)
    speech: list[np.ndarray] = []
    tts_sr = engines.tts.sample_rate
    t_all = time.perf_counter()  # processing time, without reading the file or loading the VAD
    try:
        for start_s, tr in _pieces(audio, engines, vad, endpoint, use_vad):
            segs = tr.segments or ([Segment(tr.text, 0.0, tr.audio_s)] if tr.text else [])
            if getattr(engines.asr, "long_form", False):
                items = [(start_s + s.start, start_s + s.end, s.text, []) for s in segs]
            else:  # one utterance, its segments are the words
                words = [{"word": s.text, "start": round(start_s + s.start, 3), "end": round(start_s + s.end, 3)}
                         for s in tr.segments]
                items = [(start_s, start_s + tr.audio_s, tr.text, words)]
            share = tr.compute_s / max(1, len(items))
            for a, b, text, words in items:
                mt = engines.translate(text) if text else None
                sp = engines.tts.synthesize(mt.text) if mt and mt.text else None
                if sp is not None and len(sp.audio):
                    speech += [sp.audio, np.zeros(int(GAP_S * tts_sr), np.float32)]
                res.utterances.append(UtteranceResult(round(a, 3), round(b, 3), text, mt.text if mt else "", words,
                                                      round(share, 4), round(mt.compute_s, 4) if mt else 0.0,
                                                      round(sp.seconds_to_synthesize, 4) if sp else 0.0))
            writer.flush()
        res.complete = True
    finally:
        if own_vad is not None:
            own_vad.close()
        write_audio(paths["wav"], np.concatenate(speech) if speech else np.zeros(0, np.float32), tts_sr)
        total = time.perf_counter() - t_all
        res.timings = {"asr_s": round(sum(u.asr_s for u in res.utterances), 4),
                       "mt_s": round(sum(u.mt_s for u in res.utterances), 4),
                       "tts_s": round(sum(u.tts_s for u in res.utterances), 4), "total_s": round(total, 4),
                       "rtf": round(total / audio_s, 4) if audio_s else 0.0}
        writer.flush()
    return res
