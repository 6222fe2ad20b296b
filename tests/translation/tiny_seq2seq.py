"""Tiny encoder-decoder models with the exact input/output layout of Optimum's ONNX exports.

Built with PyTorch (random weights, fixed seed) and exported with the TorchScript exporter;
the merged decoder is assembled like Optimum does it: an ``If`` on ``use_cache_branch``
whose branches are the no-past and with-past decoders. Used by the tests only.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import onnx
from onnx import TensorProto, helper

D, HEADS, LAYERS, MAXPOS = 16, 2, 2, 96
HD = D // HEADS


def _torch_modules(vocab: int, kind: str):
    import torch
    from torch import nn

    torch.manual_seed(0 if kind == "whisper" else 1)

    def split(x):  # [B, s, D] -> [B, H, s, hd]
        b, s = x.shape[0], x.shape[1]
        return x.reshape(b, s, HEADS, HD).transpose(1, 2)

    def attend(q, k, v, bias):
        w = q @ k.transpose(2, 3) / (HD ** 0.5) + bias
        o = torch.softmax(w, dim=-1) @ v  # [B, H, s, hd]
        return o.transpose(1, 2).reshape(o.shape[0], o.shape[2], D)

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.sq, self.sk, self.sv, self.so = (nn.Linear(D, D) for _ in range(4))
            self.cq, self.ck, self.cv, self.co = (nn.Linear(D, D) for _ in range(4))
            self.ff = nn.Sequential(nn.Linear(D, 2 * D), nn.GELU(), nn.Linear(2 * D, D))

    class Decoder(nn.Module):
        def __init__(self, with_mask: bool):
            super().__init__()
            self.with_mask = with_mask
            self.emb = nn.Embedding(vocab, D)
            self.pos = nn.Embedding(MAXPOS, D)
            self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))
            self.out = nn.Linear(D, vocab)
            with torch.no_grad():  # spread the logits so argmax/beam choices are clear-cut
                self.out.weight.mul_(8.0)

        def core(self, ids, enc_mask, past):
            # past: list of (dk, dv, ek, ev) per layer; dk may have length 0
            b, s = ids.shape
            plen = past[0][0].shape[2]
            positions = torch.arange(s) + plen
            h = self.emb(ids) + self.pos(positions)[None]
            total = plen + s
            shift = torch.triu(torch.ones(s, total), diagonal=1 + plen) * -1e9
            cross_bias = 0.0 if enc_mask is None else ((1.0 - enc_mask.to(torch.float32)) * -1e9)[:, None, None, :]
            presents = []
            for layer, (dk, dv, ek, ev) in zip(self.layers, past, strict=True):
                k = torch.cat([dk, split(layer.sk(h))], dim=2)
                v = torch.cat([dv, split(layer.sv(h))], dim=2)
                h = h + layer.so(attend(split(layer.sq(h)), k, v, shift))
                h = h + layer.co(attend(split(layer.cq(h)), ek, ev, cross_bias))
                h = h + layer.ff(h)
                presents += [k, v, ek, ev]
            return self.out(h), presents

    class DecoderView(nn.Module):
        """One export view of ``dec``: its inputs are ``([enc_mask], ids, *rest)``."""

        def __init__(self, dec):
            super().__init__()
            self.dec = dec

        def split_mask(self, args):
            """``(enc_mask or None, [ids, *rest])``."""
            return (args[0], list(args[1:])) if self.dec.with_mask else (None, list(args))

    class NoPast(DecoderView):
        def forward(self, *args):
            enc_mask, (ids, enc) = self.split_mask(args)
            b = ids.shape[0]
            empty = torch.zeros(b, HEADS, 0, HD)
            past = []
            for layer in self.dec.layers:
                past.append((empty, empty, split(layer.ck(enc)), split(layer.cv(enc))))
            logits, presents = self.dec.core(ids, enc_mask, past)
            return (logits, *presents)

    class WithPast(DecoderView):
        def forward(self, *args):
            enc_mask, (ids, *flat) = self.split_mask(args)
            past = [tuple(flat[4 * i:4 * i + 4]) for i in range(LAYERS)]
            logits, presents = self.dec.core(ids, enc_mask, past)
            dec_only = [p for i, p in enumerate(presents) if i % 4 < 2]
            return (logits, *dec_only)

    class WhisperEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv1d(80, D, 3, padding=1)
            self.c2 = nn.Conv1d(D, D, 3, stride=2, padding=1)

        def forward(self, input_features):
            x = torch.nn.functional.gelu(self.c1(input_features))
            return torch.tanh(self.c2(x)).transpose(1, 2)

    class MarianEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(vocab, D)
            self.lin = nn.Linear(D, D)

        def forward(self, input_ids, attention_mask):
            h = torch.tanh(self.lin(self.emb(input_ids)))
            return h * attention_mask[..., None].to(torch.float32)

    dec = Decoder(with_mask=(kind == "marian")).eval()
    enc = (WhisperEncoder() if kind == "whisper" else MarianEncoder()).eval()
    return enc, NoPast(dec).eval(), WithPast(dec).eval()


def _kv_names(prefix: str, halves=("decoder", "encoder")):
    return [f"{prefix}.{i}.{h}.{kv}" for i in range(LAYERS) for h in halves for kv in ("key", "value")]


def _export(module, args, in_names, out_names, dyn) -> onnx.ModelProto:
    import torch

    f = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module, args, f, input_names=in_names, output_names=out_names,
                          dynamic_axes=dyn, opset_version=17, dynamo=False)
    return onnx.load_from_string(f.getvalue())


def _prefix_graph(g: onnx.GraphProto, pre: str, keep: set[str]) -> None:
    """Rename every value/initializer/node of ``g`` except the names in ``keep``."""
    def r(n):
        return n if (not n or n in keep) else pre + n

    for init in g.initializer:
        init.name = r(init.name)
    for node in g.node:
        node.name = pre + node.name
        node.input[:] = [r(n) for n in node.input]
        node.output[:] = [r(n) for n in node.output]
    for vi in list(g.value_info) + list(g.output):
        vi.name = r(vi.name)


def merge_decoders(no_past: onnx.ModelProto, with_past: onnx.ModelProto) -> onnx.ModelProto:
    """An Optimum-style ``decoder_model_merged``: If(use_cache_branch, with_past, no_past)."""
    inputs = {i.name: i for i in no_past.graph.input}
    for i in with_past.graph.input:
        inputs.setdefault(i.name, i)
    outer = set(inputs)
    a, b = onnx.ModelProto(), onnx.ModelProto()
    a.CopyFrom(no_past)
    b.CopyFrom(with_past)
    _prefix_graph(a.graph, "np_", outer)
    _prefix_graph(b.graph, "wp_", outer)
    # the with-past branch passes the encoder half of the cache through
    for name in _kv_names("past_key_values", ("encoder",)):
        out = "wp_" + name.replace("past_key_values", "present")
        b.graph.node.append(helper.make_node("Identity", [name], [out], name="wp_id_" + name))
        b.graph.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, None))
    order = [o.name for o in no_past.graph.output]
    by_b = {o.name[3:]: o for o in b.graph.output}
    b_outs = [by_b[n] for n in order]
    a_outs = list(a.graph.output)
    for o in a_outs + b_outs:
        o.type.tensor_type.ClearField("shape")
    # like Optimum: float weights live in the outer graph (shared), small int constants in the branches
    def split_inits(g):
        outer_w = [i for i in g.initializer if i.data_type == TensorProto.FLOAT]
        inner = [i for i in g.initializer if i.data_type != TensorProto.FLOAT]
        return outer_w, inner

    b_w, b_in = split_inits(b.graph)
    a_w, a_in = split_inits(a.graph)
    then_g = helper.make_graph(list(b.graph.node), "with_past", [], b_outs, b_in)
    else_g = helper.make_graph(list(a.graph.node), "no_past", [], a_outs, a_in)
    flag = helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [1])
    if_node = helper.make_node("If", ["use_cache_branch"], order, name="optimum::if",
                               then_branch=then_g, else_branch=else_g)
    outs = [helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, None) for o in no_past.graph.output]
    for o, src in zip(outs, no_past.graph.output, strict=True):
        o.type.CopyFrom(src.type)
    g = helper.make_graph([if_node], "merged", list(inputs.values()) + [flag], outs, initializer=a_w + b_w)
    m = helper.make_model(g, opset_imports=list(no_past.opset_import))
    m.ir_version = no_past.ir_version
    return m


def build(kind: str, folder: Path, vocab: int, layout: str = "merged") -> dict[str, Path]:
    """Write encoder_model.onnx and the decoder(s) for ``kind`` ("whisper"|"marian") into ``folder``."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    enc, nopast, withpast = _torch_modules(vocab, kind)
    masked = kind == "marian"
    if kind == "whisper":
        feats = torch.zeros(1, 80, 3000)
        e = _export(enc, (feats,), ["input_features"], ["last_hidden_state"],
                    {"input_features": {0: "batch_size"}, "last_hidden_state": {0: "batch_size"}})
        t_enc = 1500
    else:
        ids = torch.zeros(1, 5, dtype=torch.int64)
        e = _export(enc, (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"], ["last_hidden_state"],
                    {"input_ids": {0: "batch_size", 1: "encoder_sequence_length"},
                     "attention_mask": {0: "batch_size", 1: "encoder_sequence_length"},
                     "last_hidden_state": {0: "batch_size", 1: "encoder_sequence_length"}})
        t_enc = 5
    onnx.save(e, folder / "encoder_model.onnx")
    ids = torch.zeros(1, 3, dtype=torch.int64)
    enc_h = torch.zeros(1, t_enc, D)
    enc_m = torch.ones(1, t_enc, dtype=torch.int64)
    pres = _kv_names("present")
    b_s = {0: "batch_size", 1: "decoder_sequence_length"}
    dyn = {"input_ids": b_s, "encoder_hidden_states": {0: "batch_size", 1: "encoder_sequence_length"},
           "logits": b_s}
    if masked:
        dyn["encoder_attention_mask"] = {0: "batch_size", 1: "encoder_sequence_length"}
    for n in pres:
        dyn[n] = {0: "batch_size", 2: "past_decoder_sequence_length + 1" if ".decoder." in n
                  else "encoder_sequence_length_out"}
    in_np = (["encoder_attention_mask"] if masked else []) + ["input_ids", "encoder_hidden_states"]
    args_np = ((enc_m,) if masked else ()) + (ids, enc_h)
    no_past = _export(nopast, args_np, in_np, ["logits"] + pres, dyn)
    past_names = _kv_names("past_key_values")
    dk = torch.zeros(1, HEADS, 3, HD)
    ek = torch.zeros(1, HEADS, t_enc, HD)
    past_vals = []
    for _ in range(LAYERS):
        past_vals += [dk, dk, ek, ek]
    dyn_p = {"input_ids": b_s, "logits": b_s}
    if masked:
        dyn_p["encoder_attention_mask"] = {0: "batch_size", 1: "encoder_sequence_length"}
    for n in past_names:
        dyn_p[n] = {0: "batch_size", 2: "past_decoder_sequence_length" if ".decoder." in n
                    else "encoder_sequence_length_out"}
    dec_pres = _kv_names("present", ("decoder",))
    for n in dec_pres:
        dyn_p[n] = {0: "batch_size", 2: "past_decoder_sequence_length + 1"}
    in_p = (["encoder_attention_mask"] if masked else []) + ["input_ids"] + past_names
    args_p = ((enc_m,) if masked else ()) + (torch.zeros(1, 1, dtype=torch.int64), *past_vals)
    with_past = _export(withpast, args_p, in_p, ["logits"] + dec_pres, dyn_p)
    if layout == "merged":
        onnx.save(merge_decoders(no_past, with_past), folder / "decoder_model_merged.onnx")
    else:
        onnx.save(no_past, folder / "decoder_model.onnx")
        onnx.save(with_past, folder / "decoder_with_past_model.onnx")
    return {p.name: p for p in folder.glob("*.onnx")}


def whisper_vocab(folder: Path) -> int:
    """tokenizer.json: 256 byte tokens + Whisper's special tokens; returns the vocab size."""
    from apps.mobile_translation.bpe import _bytes_to_unicode

    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|es|>", "<|transcribe|>", "<|notimestamps|>"]
    added = [{"id": 256 + i, "content": t, "special": True} for i, t in enumerate(specials)]
    data = {"model": {"type": "BPE", "vocab": vocab, "merges": []}, "added_tokens": added}
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    return 256 + len(specials)


def marian_vocab(folder: Path, sentences: list[str]) -> int:
    """source.spm / target.spm (tiny SentencePiece models), vocab.json and config.json."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(sentences), encoding="utf-8")
    for side in ("source", "target"):
        spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / side), vocab_size=24,
                                       hard_vocab_limit=False,
                                       model_type="unigram", character_coverage=1.0, minloglevel=2,
                                       bos_id=-1, eos_id=2, unk_id=1, pad_id=-1)
        (folder / f"{side}.model").rename(folder / f"{side}.spm")
        (folder / f"{side}.vocab").unlink()
    corpus.unlink()
    sp = spm.SentencePieceProcessor(model_file=str(folder / "source.spm"))
    vocab = {"</s>": 0, "<unk>": 1}
    for i in range(sp.get_piece_size()):
        p = sp.id_to_piece(i)
        if p not in ("<unk>", "</s>", "<s>"):
            vocab.setdefault(p, len(vocab))
    tp = spm.SentencePieceProcessor(model_file=str(folder / "target.spm"))
    for i in range(tp.get_piece_size()):
        vocab.setdefault(tp.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "config.json").write_text(json.dumps({"pad_token_id": vocab["<pad>"], "eos_token_id": 0,
                                                    "decoder_start_token_id": vocab["<pad>"]}))
    return len(vocab)
