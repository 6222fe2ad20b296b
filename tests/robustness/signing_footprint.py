"""What the `signing` extra adds to an install, and what verifying costs a process.

    PYTHONPATH=$PWD python -m tests.robustness.signing_footprint

Prints the distributions that `model-signing` + `pyopenssl` pull in beyond the core
dependencies (sizes from their installed RECORD files), then the time and peak-RSS growth
of importing the verifier once. Not a pytest module.
"""
from __future__ import annotations

import importlib.metadata as md
import os
import resource
import sys
import time

from packaging.requirements import Requirement

CORE = ["onnxruntime", "onnx", "numpy", "opencv-python-headless", "pydantic", "sounddevice", "tqdm", "pyyaml",
        "scipy", "matplotlib", "sympy", "pillow"]
EXTRA = ["model-signing", "pyopenssl"]


def closure(names: list[str]) -> set[str]:
    seen: set[str] = set()
    stack = list(names)
    while stack:
        n = stack.pop().lower().replace("_", "-")
        if n in seen:
            continue
        try:
            d = md.distribution(n)
        except md.PackageNotFoundError:
            continue
        seen.add(n)
        for r in d.requires or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                stack.append(req.name)
    return seen


def installed_bytes(name: str) -> int:
    d = md.distribution(name)
    return sum(os.path.getsize(d.locate_file(f)) for f in d.files or [] if os.path.isfile(d.locate_file(f)))


def main() -> int:
    added = sorted(closure(EXTRA) - closure(CORE), key=installed_bytes, reverse=True)
    total = sum(map(installed_bytes, added))
    print(f"`signing` extra: {len(added)} distributions beyond the core, {total / 2**20:.1f} MiB installed")
    for n in added:
        print(f"  {n:26s} {installed_bytes(n) / 2**20:6.2f} MiB")
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    import model_signing.verifying  # noqa: F401
    dt = time.perf_counter() - t
    grow = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - r0) / 1024
    from sdk.runtime import discover_device

    isa = [k for k, v in discover_device().isa.items() if v]
    print(f"import model_signing.verifying: {dt * 1000:.0f} ms, +{grow:.0f} MiB peak RSS, "
          f"{len(sys.modules)} modules loaded (CPU ISA: {', '.join(isa)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
