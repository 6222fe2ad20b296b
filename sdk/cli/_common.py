"""Helpers shared by the SDK commands: --json output, model-or-bundle arguments, tables."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def to_jsonable(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def emit(args: argparse.Namespace, data: Any, human: str) -> None:
    """Print ``data`` as JSON with --json, else the human text."""
    if getattr(args, "json", False):
        json.dump(to_jsonable(data), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(human)


def table(rows: Iterable[Sequence[Any]], indent: str = "") -> str:
    """Left-aligned columns."""
    rows = [[str(c) for c in r] for r in rows]
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(len(r) for r in rows))]
    return "\n".join(indent + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows)


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def fmt_count(n: int | None, unit: str = "") -> str:
    if n is None:
        return "n/a"
    for suffix, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {suffix}{unit}"
    return f"{n} {unit}".strip()


def is_bundle_path(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() == ".ewb"


def resolve_model_arg(arg: str) -> tuple[Path, Any]:
    """(ONNX file to use, the loaded Bundle or None) for a MODEL|BUNDLE argument.

    A folder or a ``.ewb`` file is a bundle: it is loaded (and its hashes verified) with
    ``sdk.bundle.load_bundle``; its ``"model"`` role is the ONNX file.
    """
    p = Path(arg)
    if not p.exists():
        raise FileNotFoundError(f"no such model or bundle: {p}")
    if is_bundle_path(p):
        from sdk.bundle import load_bundle  # bundles are only needed for bundle arguments

        b = load_bundle(p)
        return Path(b.model_path("model")), b
    return p, None


def parse_shape_args(items: Sequence[str] | None) -> dict[str, list[int]]:
    """``["x=1,3,640,640", "mask=1,77"]`` -> ``{"x": [1, 3, 640, 640], "mask": [1, 77]}``."""
    out: dict[str, list[int]] = {}
    for item in items or []:
        name, sep, dims = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name] = [int(d) for d in dims.replace("x", ",").split(",") if d.strip()]
        except ValueError:
            raise ValueError(f"--shape expects NAME=D1,D2,... (e.g. x=1,3,640,640), got {item!r}") from None
    return out
