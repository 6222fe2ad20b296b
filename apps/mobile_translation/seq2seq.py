"""Autoregressive decoding over a Hugging Face Optimum encoder-decoder export, with KV cache.

Optimum writes the decoder in one of two layouts; both are handled:

- ``decoder_model_merged.onnx``: inputs ``input_ids`` [B, s] int64, ``encoder_hidden_states``
  [B, T, d], optionally ``encoder_attention_mask`` [B, T] int64 (Marian), the cache
  ``past_key_values.{i}.{decoder|encoder}.{key|value}`` [B, heads, len, head_dim] and
  ``use_cache_branch`` bool [1]; outputs ``logits`` [B, s, V] and ``present.{i}...``.
  The first step takes the no-cache branch (empty past tensors, ``use_cache_branch=False``),
  later steps feed only the newest token with the cache (``True``).
- ``decoder_model.onnx`` (first step, no past inputs) + ``decoder_with_past_model.onnx``
  (later steps; outputs only the decoder half of the cache).

The cross-attention (encoder) half of the cache is computed once, at the first step, and
reused; the self-attention half grows by one position per step. Greedy and beam search
run on it (beams are a batch; the cache is reordered by each beam's parent).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from sdk.errors import ModelLoadError

_PAST = re.compile(r"^past_key_values\.(\d+)\.(decoder|encoder)\.(key|value)$")
_PRESENT = re.compile(r"^present\.(\d+)\.(decoder|encoder)\.(key|value)$")


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    m = x.max(axis=-1, keepdims=True)
    e = x - m
    return e - np.log(np.exp(e).sum(axis=-1, keepdims=True))


@dataclass
class GenerationConfig:
    max_new_tokens: int = 128
    num_beams: int = 1                  # 1 = greedy
    length_penalty: float = 1.0         # beam score = sum log p / len ** length_penalty
    use_cache: bool = True              # False re-runs the whole prefix each step (reference)
    suppress_ids: list[int] = field(default_factory=list)        # never generated
    begin_suppress_ids: list[int] = field(default_factory=list)  # not generated at the first step

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.num_beams}")


class KVDecoder:
    """One decoding step at a time over Optimum decoder engine(s); counts which path ran."""

    def __init__(self, merged=None, decoder=None, decoder_with_past=None,
                 num_heads: int | None = None, head_dim: int | None = None):
        if merged is None and decoder is None:
            raise ValueError("give either merged=Engine(decoder_model_merged.onnx) "
                             "or decoder=Engine(decoder_model.onnx)")
        self.merged, self.decoder, self.decoder_with_past = merged, decoder, decoder_with_past
        first = merged or decoder
        self.first_inputs = {t.name: t for t in first.inputs}
        past_eng = merged or decoder_with_past
        self.past_inputs = {t.name: t for t in past_eng.inputs} if past_eng is not None else {}
        self.past_names = sorted((n for n in self.past_inputs if _PAST.match(n)),
                                 key=lambda n: (int(_PAST.match(n).group(1)), n))
        present = [t.name for t in first.outputs if _PRESENT.match(t.name)]
        self.num_layers = 1 + max((int(_PRESENT.match(n).group(1)) for n in present), default=-1)
        if "input_ids" not in self.first_inputs or "logits" not in {t.name for t in first.outputs}:
            raise ModelLoadError(f"not an Optimum decoder: expected input_ids -> logits, got inputs "
                                 f"{sorted(self.first_inputs)}")
        self.has_mask = "encoder_attention_mask" in self.first_inputs
        self.can_cache = bool(self.past_names) and self.num_layers > 0
        if merged is not None and "use_cache_branch" not in self.first_inputs:
            raise ModelLoadError("decoder_model_merged.onnx has no use_cache_branch input")
        self.num_heads, self.head_dim = num_heads, head_dim
        if merged is not None:
            spec = self.past_inputs[self.past_names[0]].shape if self.past_names else []
            if len(spec) == 4:
                self.num_heads = self.num_heads or (spec[1] if isinstance(spec[1], int) else None)
                self.head_dim = self.head_dim or (spec[3] if isinstance(spec[3], int) else None)
            if self.past_names and (self.num_heads is None or self.head_dim is None):
                raise ModelLoadError("the merged decoder's cache shapes are dynamic; pass num_heads and head_dim")
        self._first_out = [t.name for t in first.outputs]
        # later steps fetch only the logits and the self-attention cache: the encoder half never
        # changes after step 0, and copying it out of onnxruntime each step costs milliseconds
        past_out = [t.name for t in past_eng.outputs] if past_eng is not None else []
        self._past_out = [n for n in past_out if not ((m := _PRESENT.match(n)) and m.group(2) == "encoder")]
        self.calls = {"no_past": 0, "with_past": 0}

    # -- one step ---------------------------------------------------------------------

    def close(self) -> None:
        """Close every decoder engine this object holds."""
        for eng in (self.merged, self.decoder, self.decoder_with_past):
            if eng is not None:
                eng.close()
    def _common(self, inputs, ids, enc, mask):
        feed = {"input_ids": ids.astype(np.int64, copy=False)}
        if "encoder_hidden_states" in inputs:
            feed["encoder_hidden_states"] = enc
        if "encoder_attention_mask" in inputs:
            feed["encoder_attention_mask"] = mask
        return feed

    def first_step(self, ids: np.ndarray, enc: np.ndarray, mask: np.ndarray | None):
        """Full prefix, no cache: returns (logits [B, s, V], cache dict)."""
        feed = self._common(self.first_inputs, ids, enc, mask)
        if self.merged is not None:
            b = ids.shape[0]
            empty = np.zeros((b, self.num_heads, 0, self.head_dim), dtype=self.past_inputs[self.past_names[0]].dtype
                             if self.past_names else np.float32)
            for n in self.past_names:
                feed[n] = empty
            feed["use_cache_branch"] = np.array([False])
            outs = self.merged.run_list(feed, self._first_out)
        else:
            outs = self.decoder.run_list(feed, self._first_out)
        self.calls["no_past"] += 1
        res = dict(zip(self._first_out, outs, strict=True))
        cache = {"past_key_values" + n[len("present"):]: v for n, v in res.items() if n.startswith("present.")}
        return res["logits"], cache

    def next_step(self, ids: np.ndarray, enc: np.ndarray, mask: np.ndarray | None, cache: dict):
        """Newest token(s) only, with the cache: returns (logits, updated cache)."""
        eng = self.merged or self.decoder_with_past
        feed = self._common(self.past_inputs, ids, enc, mask)
        for n in self.past_names:
            feed[n] = cache[n]
        if self.merged is not None:
            feed["use_cache_branch"] = np.array([True])
        outs = eng.run_list(feed, self._past_out)
        self.calls["with_past"] += 1
        res = dict(zip(self._past_out, outs, strict=True))
        new = dict(cache)
        for n, v in res.items():
            m = _PRESENT.match(n)
            if m and m.group(2) == "decoder":  # the encoder half never changes after step 0
                new["past_key_values" + n[len("present"):]] = v
        return res["logits"], new

    # -- search -----------------------------------------------------------------------
    def generate(self, enc: np.ndarray, mask: np.ndarray | None, prompt: list[int], eos_id: int,
                 cfg: GenerationConfig) -> list[int]:
        """Token ids generated after ``prompt`` (without it, without the final EOS)."""
        if enc.ndim != 3 or enc.shape[0] != 1:
            raise ValueError(f"encoder_hidden_states must be [1, T, d], got shape {enc.shape}")
        if cfg.num_beams == 1:
            return self._greedy(enc, mask, prompt, eos_id, cfg)
        return self._beam(enc, mask, prompt, eos_id, cfg)

    def _mask_logits(self, logp: np.ndarray, step: int, cfg: GenerationConfig) -> np.ndarray:
        if cfg.suppress_ids:
            logp[..., cfg.suppress_ids] = -np.inf
        if step == 0 and cfg.begin_suppress_ids:
            logp[..., cfg.begin_suppress_ids] = -np.inf
        return logp

    def _greedy(self, enc, mask, prompt, eos_id, cfg):
        seq = list(prompt)
        out: list[int] = []
        use_cache = cfg.use_cache and self.can_cache
        cache = None
        for step in range(cfg.max_new_tokens):
            if cache is None or not use_cache:
                logits, cache = self.first_step(np.array([seq], np.int64), enc, mask)
            else:
                logits, cache = self.next_step(np.array([[seq[-1]]], np.int64), enc, mask, cache)
            scores = self._mask_logits(logits[0, -1].astype(np.float32).copy(), step, cfg)
            tok = int(np.argmax(scores))
            if tok == eos_id:
                break
            seq.append(tok)
            out.append(tok)
        return out

    def _beam(self, enc, mask, prompt, eos_id, cfg):
        k = cfg.num_beams
        use_cache = cfg.use_cache and self.can_cache
        # step 0 on one beam, then the cache is tiled to k beams
        logits, cache = self.first_step(np.array([prompt], np.int64), enc, mask)
        logp = self._mask_logits(_log_softmax(logits[:, -1]), 0, cfg)[0]
        beams: list[list[int]] = [[]]
        scores = np.zeros(1, np.float32)
        finished: list[tuple[float, list[int]]] = []
        enc_k = np.repeat(enc, k, axis=0)
        mask_k = np.repeat(mask, k, axis=0) if mask is not None else None
        all_logp = logp[None, :]
        for step in range(cfg.max_new_tokens):
            vocab = all_logp.shape[-1]
            cand = (scores[:, None] + all_logp).reshape(-1)
            order = np.argsort(-cand, kind="stable")[: 2 * k]
            new_beams, new_scores, parents = [], [], []
            for flat in order:
                s = float(cand[flat])
                if not np.isfinite(s):
                    break
                parent, tok = divmod(int(flat), vocab)
                if tok == eos_id:
                    hyp = beams[parent]
                    finished.append((s / max(1, len(hyp) + 1) ** cfg.length_penalty, hyp))
                else:
                    new_beams.append(beams[parent] + [tok])
                    new_scores.append(s)
                    parents.append(parent)
                if len(new_beams) == k:
                    break
            if not new_beams or step == cfg.max_new_tokens - 1:
                beams, scores = new_beams, np.array(new_scores, np.float32)
                break
            # done when k hypotheses have ended and no live beam can beat the worst of them
            if len(finished) >= k:
                finished.sort(key=lambda t: -t[0])
                finished = finished[:k]
                best_live = max(new_scores) / (len(new_beams[0])) ** cfg.length_penalty
                if best_live <= finished[-1][0]:
                    beams, scores = new_beams, np.array(new_scores, np.float32)
                    break
            beams, scores = new_beams, np.array(new_scores, np.float32)
            idx = np.array(parents, np.int64)
            n = len(beams)
            if use_cache:
                cache = {name: np.take(v, idx, axis=0) for name, v in cache.items()}
                last = np.array([[b[-1]] for b in beams], np.int64)
                logits, cache = self.next_step(last, enc_k[:n], None if mask_k is None else mask_k[:n], cache)
            else:
                ids = np.array([list(prompt) + b for b in beams], np.int64)
                logits, _ = self.first_step(ids, enc_k[:n], None if mask_k is None else mask_k[:n])
            all_logp = self._mask_logits(_log_softmax(logits[:, -1]), step + 1, cfg)
        for s, b in zip(scores, beams, strict=True):
            finished.append((float(s) / max(1, len(b)) ** cfg.length_penalty, b))
        if not finished:
            return []
        finished.sort(key=lambda t: -t[0])
        return finished[0][1]
