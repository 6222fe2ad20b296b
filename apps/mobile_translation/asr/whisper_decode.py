"""Whisper's decoding rules over one 30-second window, with faster-whisper's safeguards.

- **Search**: beam search at temperature 0 (``beam_size``; 1 = greedy), sampling
  (``best_of`` candidates) at higher temperatures; every path runs on the KV cache of
  :class:`~apps.mobile_translation.seq2seq.KVDecoder` (merged decoder, ``use_cache_branch``).
- **Logit rules** (as openai-whisper's ``SuppressBlank``, ``SuppressTokens``,
  ``ApplyTimestampRules``): special tokens never appear in the text; the first token is a
  timestamp no later than ``max_initial_timestamp``; timestamps come in pairs and never go
  back; a timestamp is forced when their total probability beats every text token.
- **Fallback**: a window whose text compresses too well (``compression_ratio_threshold``,
  a sign of a loop), whose mean log-probability is too low (``log_prob_threshold``) or
  that loops on an n-gram (the repetition guard) is decoded again at the next temperature.
- **Silence**: ``no_speech_prob`` is the probability of ``<|nospeech|>`` at the first step;
  the window counts as silence when it exceeds ``no_speech_threshold`` and the text is
  unlikely (mean log-probability below ``log_prob_threshold``).
- **Token limit**: at most ``max_new_tokens`` per window (Whisper's 224).
- **Cancellation**: a ``stop()`` callable, checked before every decoder step, ends the decode
  with :class:`DecodeCancelled` (the live loop drops a partial that newer audio made stale).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

NEG = -np.inf


class DecodeCancelled(Exception):
    """The caller's ``stop()`` asked a decode in progress to end (not an error)."""


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    m = x.max(axis=-1, keepdims=True)
    e = x - m
    return e - np.log(np.exp(e).sum(axis=-1, keepdims=True))


def compression_ratio(text: str) -> float:
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def repeated_tail(tokens: list[int], max_n: int = 24, min_repeats: int = 3, min_span: int = 16) -> int | None:
    """If ``tokens`` ends with an n-gram repeated ``min_repeats``+ times covering ``min_span``+
    tokens, the length to keep (up to the end of its first occurrence); else None."""
    n_tok = len(tokens)
    for n in range(1, min(max_n, n_tok // min_repeats) + 1):
        gram = tokens[n_tok - n:]
        reps = 1
        while (reps + 1) * n <= n_tok and tokens[n_tok - (reps + 1) * n:n_tok - reps * n] == gram:
            reps += 1
        if reps >= min_repeats and reps * n >= min_span:
            return n_tok - (reps - 1) * n
    return None


@dataclass(frozen=True)
class WhisperTokens:
    """Special token ids of one Whisper vocabulary (None where the model has no such token)."""

    eot: int
    sot: int
    sot_prev: int | None
    no_speech: int | None
    no_timestamps: int | None
    timestamp_begin: int | None   # <|0.00|>; None for vocabularies without timestamps
    vocab_size: int
    suppress: tuple[int, ...] = ()        # never generated
    begin_suppress: tuple[int, ...] = ()  # not generated as the first text token

    @property
    def has_timestamps(self) -> bool:
        return self.timestamp_begin is not None


@dataclass
class DecodeOptions:
    beam_size: int = 5
    best_of: int = 2                         # sampled candidates per temperature > 0
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4
    log_prob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    max_new_tokens: int = 224
    max_initial_timestamp: float = 1.0       # seconds
    timestamps: bool = True                  # segment timestamps (when the vocabulary has them)
    condition_on_previous_text: bool = True  # previous window's text as the prompt
    prompt_reset_on_temperature: float = 0.5
    max_prompt_tokens: int = 223
    seed: int = 0

    def __post_init__(self):
        if self.beam_size < 1 or self.best_of < 1:
            raise ValueError(f"beam_size and best_of must be >= 1, got {self.beam_size} and {self.best_of}")
        if not self.temperatures or any(t < 0 for t in self.temperatures):
            raise ValueError(f"temperatures must be a non-empty list of values >= 0, got {self.temperatures}")
        if not 1 <= self.max_new_tokens <= 440:
            raise ValueError(f"max_new_tokens must be in [1, 440], got {self.max_new_tokens}")


@dataclass
class DecodeResult:
    tokens: list[int]                 # generated ids (timestamps included, EOT excluded)
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float = 0.0
    looped: bool = False              # cut by the repetition guard (or hit the token limit)
    text: str = ""
    fallbacks: list[str] = field(default_factory=list)

    def is_silence(self, opts: DecodeOptions) -> bool:
        if opts.no_speech_threshold is None or self.no_speech_prob <= opts.no_speech_threshold:
            return False
        return opts.log_prob_threshold is None or self.avg_logprob < opts.log_prob_threshold


class WindowDecoder:
    """Decode one window's encoder output into tokens; ``decode_with_fallback`` is the entry point."""

    def __init__(self, kv, tok: WhisperTokens, decode_text):
        self.kv, self.tok, self.decode_text = kv, tok, decode_text
        self._suppress = np.array(sorted(set(tok.suppress)), np.int64)
        self._begin = np.array(sorted(set(tok.begin_suppress)), np.int64)

    # -- logit rules ------------------------------------------------------------------
    def _rules(self, logits: np.ndarray, seqs: list[list[int]], timestamps: bool, max_init: int) -> np.ndarray:
        """Apply the suppression and timestamp rules to raw logits [B, V] in place; returns log-probs."""
        tok = self.tok
        logits = logits[:, :tok.vocab_size]
        if len(self._suppress):
            logits[:, self._suppress] = NEG
        tb = tok.timestamp_begin
        if not timestamps and tb is not None:
            logits[:, tb:] = NEG
        for k, seq in enumerate(seqs):
            if not seq and len(self._begin):  # openai's SuppressBlank: at the first step only
                logits[k, self._begin] = NEG
            if not timestamps or tb is None:
                continue
            if tok.no_timestamps is not None:
                logits[k, tok.no_timestamps] = NEG
            if not seq:  # the first token is a timestamp, no later than max_initial_timestamp
                logits[k, :tb] = NEG
                logits[k, tb + max_init + 1:] = NEG
                continue
            last_ts = seq[-1] >= tb
            pen_ts = len(seq) < 2 or seq[-2] >= tb
            if last_ts:
                if pen_ts:
                    logits[k, tb:] = NEG          # a pair just closed: text must follow
                else:
                    logits[k, :tok.eot] = NEG     # an opening timestamp: another one or EOT
            stamps = [t for t in seq if t >= tb]
            if stamps:
                floor = stamps[-1] if last_ts and not pen_ts else stamps[-1] + 1
                logits[k, tb:floor] = NEG
        logp = log_softmax(logits)
        if timestamps and tb is not None:
            ts_mass = np.logaddexp.reduce(logp[:, tb:], axis=-1)
            text_max = logp[:, :tb].max(axis=-1)
            force = ts_mass > text_max
            if force.any():
                logits[force, :tb] = NEG
                logp = log_softmax(logits)
        return logp

    # -- search -----------------------------------------------------------------------
    def _first(self, enc, prompt: list[int], sot_index: int):
        logits, cache = self.kv.first_step(np.array([prompt], np.int64), enc, None)
        no_speech = 0.0
        if self.tok.no_speech is not None:
            p = log_softmax(logits[0, sot_index, :self.tok.vocab_size].copy())
            no_speech = float(np.exp(p[self.tok.no_speech]))
        return logits[:, -1].astype(np.float32), cache, no_speech

    def _step(self, enc, cache, last: list[int]):
        logits, cache = self.kv.next_step(np.array([[t] for t in last], np.int64), enc, None, cache)
        return logits[:, -1].astype(np.float32), cache

    def _guard(self, seq: list[int]) -> int | None:
        tb = self.tok.timestamp_begin
        if tb is None:
            return repeated_tail(seq)
        text_pos = [i for i, t in enumerate(seq) if t < tb]
        keep = repeated_tail([seq[i] for i in text_pos])
        return None if keep is None else (text_pos[keep - 1] + 1 if keep else 0)

    def _search(self, enc, prompt, sot_index, opts: DecodeOptions, temperature: float, rng,
                stop=None) -> DecodeResult:
        """Beam search (temperature 0) or ``best_of`` samples; the best hypothesis by mean log-probability."""
        width = opts.beam_size if temperature == 0 else opts.best_of
        ts = opts.timestamps and self.tok.has_timestamps
        max_init = int(round(opts.max_initial_timestamp / 0.02))
        max_new = min(opts.max_new_tokens, 447 - len(prompt))
        logits, cache, no_speech = self._first(enc, prompt, sot_index)
        seqs: list[list[int]] = [[]]
        sums = np.zeros(1, np.float64)
        finished: list[tuple[float, list[int], bool]] = []
        enc_w = np.repeat(enc, width, axis=0)
        for step in range(max_new):
            if stop is not None and stop():
                raise DecodeCancelled
            logp = self._rules(logits, seqs, ts, max_init)
            cand: list[tuple[float, int, int]] = []   # (score, parent, token)
            if temperature == 0:
                for b in range(len(seqs)):
                    top = np.argpartition(-logp[b], width)[:width + 1]
                    cand += [(sums[b] + float(logp[b, t]), b, int(t)) for t in top if np.isfinite(logp[b, t])]
                cand.sort(key=lambda c: -c[0])
            else:
                if step == 0:  # branch the single prompt into `width` samples
                    logp = np.repeat(logp, width, axis=0)
                    sums = np.repeat(sums, width)
                    seqs = [[] for _ in range(width)]
                    cache = {n: np.repeat(v, width, axis=0) for n, v in cache.items()}
                for b in range(len(seqs)):
                    p = np.exp((logp[b] - logp[b].max()) / temperature)
                    t = int(rng.choice(len(p), p=p / p.sum()))
                    cand.append((sums[b] + float(logp[b, t]), b, t))
            new_seqs, new_sums, parents = [], [], []
            for score, parent, t in cand:
                seq = seqs[parent] + [t]
                if t == self.tok.eot:
                    finished.append((score, seqs[parent], False))
                    if temperature > 0:
                        continue
                else:
                    cut = self._guard(seq)
                    if cut is not None:
                        finished.append((score, seq[:cut], True))
                    else:
                        new_seqs.append(seq)
                        new_sums.append(score)
                        parents.append(parent)
                if temperature == 0 and len(new_seqs) >= width:
                    break
            if not new_seqs or (temperature == 0 and len(finished) >= width):
                break
            if step == max_new - 1:
                finished += [(s, q, True) for s, q in zip(new_sums, new_seqs, strict=True)]
                break
            idx = np.array(parents, np.int64)
            if len(idx) != len(seqs) or (idx != np.arange(len(idx))).any():   # greedy keeps its one row
                cache = {n: np.take(v, idx, axis=0) for n, v in cache.items()}
            seqs, sums = new_seqs, np.array(new_sums)
            logits, cache = self._step(enc_w[:len(seqs)], cache, [s[-1] for s in seqs])
        else:
            finished += [(s, q, True) for s, q in zip(sums, seqs, strict=True)]
        if not finished:
            finished = [(float(s), q, True) for s, q in zip(sums, seqs, strict=True)]
        best = max(finished, key=lambda f: f[0] / (len(f[1]) + 1))
        score, tokens, looped = best
        text = self.decode_text(tokens)
        return DecodeResult(tokens, float(score) / (len(tokens) + 1), no_speech, temperature,
                            compression_ratio(text), looped, text)

    def decode_with_fallback(self, enc, prompt: list[int], sot_index: int, opts: DecodeOptions,
                             rng: np.random.Generator | None = None, stop=None) -> DecodeResult:
        """Decode at each temperature in turn until the result passes the quality checks."""
        rng = rng or np.random.default_rng(opts.seed)
        tried: list[DecodeResult] = []
        reasons: list[str] = []
        for temp in opts.temperatures:
            res = self._search(enc, prompt, sot_index, opts, temp, rng, stop)
            why = []
            if res.looped:
                why.append("repetition")
            limit = opts.compression_ratio_threshold
            if limit is not None and res.compression_ratio > limit:
                why.append(f"compression ratio {res.compression_ratio:.2f}")
            if opts.log_prob_threshold is not None and res.avg_logprob < opts.log_prob_threshold:
                why.append(f"avg log-prob {res.avg_logprob:.2f}")
            if opts.no_speech_threshold is not None and res.no_speech_prob > opts.no_speech_threshold:
                why = []  # silence: the caller skips the window, no need to retry
            tried.append(res)
            if not why:
                res.fallbacks = reasons
                return res
            reasons.append(f"t={temp}: {', '.join(why)}")
        # nothing passed: the candidate with the best mean log-probability that did not loop
        ok = [r for r in tried if not r.looped] or tried
        best = max(ok, key=lambda r: r.avg_logprob)
        best.fallbacks = reasons
        return best
