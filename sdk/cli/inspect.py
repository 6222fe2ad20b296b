"""``edgewise inspect MODEL|BUNDLE``: signature, size, parameters, FLOPs, operators."""
from __future__ import annotations

import argparse
from typing import Any

from pydantic import BaseModel

from sdk.cli._common import add_json_flag, emit, fmt_bytes, fmt_count, parse_shape_args, resolve_model_arg, table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("inspect", help="show a model's or bundle's inputs, outputs, size, params, FLOPs",
                              description="Inspect an ONNX model or a bundle (folder or .ewb) without running it.")
    p.add_argument("model", metavar="MODEL|BUNDLE", help="an .onnx file, a bundle folder or a .ewb archive")
    p.add_argument("--shape", action="append", metavar="NAME=D1,D2,..",
                   help="fix a dynamic input shape for the FLOPs count (repeatable)")
    p.add_argument("--top", type=int, default=12, help="operators to list in the human output (default 12)")
    add_json_flag(p)
    p.set_defaults(func=run)


def _bundle_summary(bundle: Any) -> dict[str, Any]:
    m = bundle.manifest
    prov = getattr(m, "provenance", None)
    pre = getattr(m, "preprocess", None)
    return {
        "path": str(bundle.path),
        "name": m.name, "version": m.version, "task": getattr(m, "task", None),
        "description": getattr(m, "description", ""),
        "models": {role: getattr(e, "file", str(e)) for role, e in (getattr(m, "models", {}) or {}).items()},
        "labels": list(getattr(m, "labels", None) or []),
        "metrics": dict(getattr(m, "metrics", None) or {}),
        "provenance": prov.model_dump(mode="json") if isinstance(prov, BaseModel) else prov,
        "preprocess": pre.model_dump(mode="json") if isinstance(pre, BaseModel) else None,
        "files": len(getattr(m, "files", {}) or {}),
    }


def _int8_weights(path: Any) -> dict[str, Any] | None:
    """The peak INT8 weight code and whether it can overflow on this CPU; None without INT8 weights."""
    import onnx

    from sdk.runtime import discover_device
    from sdk.runtime.int8_weights import int8_weight_peak, saturation_warning
    from sdk.runtime.isa import isa_profile

    model = onnx.load(str(path))
    peak = int8_weight_peak(model)
    if peak is None:
        return None
    device = discover_device()
    return {"peak": peak, "isa_profile": isa_profile(device), "warning_here": saturation_warning(model, device)}


def run(args: argparse.Namespace) -> int:
    from sdk.bench import model_stats

    path, bundle = resolve_model_arg(args.model)
    stats = model_stats(path, parse_shape_args(args.shape) or None)
    data: dict[str, Any] = {"model": stats}
    lines = []
    if bundle is not None:
        b = _bundle_summary(bundle)
        data["bundle"] = b
        brow = [("bundle", f"{b['name']} {b['version']} ({b['task']})"), ("path", b["path"])]
        if b["description"]:
            brow.append(("description", b["description"]))
        brow.append(("models", ", ".join(f"{k}: {v}" for k, v in b["models"].items())))
        if b["labels"]:
            shown = ", ".join(b["labels"][:8]) + (f" ... ({len(b['labels'])})" if len(b["labels"]) > 8 else "")
            brow.append(("labels", shown))
        if b["metrics"]:
            brow.append(("metrics", ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                              for k, v in b["metrics"].items())))
        prov = b["provenance"] or {}
        if isinstance(prov, dict) and prov:
            brow.append(("provenance", ", ".join(f"{k}={v}" for k, v in prov.items() if v)))
        brow.append(("files", f"{b['files']} (hashes verified)"))
        lines += [table(brow), ""]
    rows = [
        ("file", stats.path),
        ("producer", stats.producer or "-"),
        ("opset", f"{stats.opset} (IR {stats.ir_version})" + (
            "; " + ", ".join(f"{d} {v}" for d, v in stats.opsets.items() if d != "ai.onnx")
            if len(stats.opsets) > 1 else "")),
        ("size", fmt_bytes(stats.size_bytes)),
        ("parameters", f"{stats.params:,}"),
        ("FLOPs", fmt_count(stats.flops, "FLOP") if stats.flops is not None
         else f"n/a ({stats.unresolved_ops} op(s) with unknown shapes; try --shape)"),
        ("nodes", str(stats.node_count)),
    ]
    int8 = _int8_weights(path)
    if int8 is not None:
        data["int8_weights"] = int8
        rows.append(("INT8 weights", f"codes up to {int8['peak']} ({'7' if int8['peak'] <= 64 else '8'}-bit)"
                     + (f"; WARNING: {int8['warning_here']}" if int8["warning_here"] else
                        f"; safe on this CPU ({int8['isa_profile']})")))
    lines.append(table(rows))
    lines.append("\ninputs:")
    lines.append(table([(s.name, s.dtype, s.shape_str()) for s in stats.inputs], indent="  "))
    lines.append("outputs:")
    lines.append(table([(s.name, s.dtype, s.shape_str()) for s in stats.outputs], indent="  "))
    ops = list(stats.op_histogram.items())
    lines.append(f"operators ({len(ops)} types):")
    top = ops[: max(args.top, 0)]
    lines.append(table([(op, n) for op, n in top], indent="  ")
                 + (f"\n  ... {len(ops) - len(top)} more" if len(ops) > len(top) else ""))
    emit(args, data, "\n".join(lines))
    return 0
