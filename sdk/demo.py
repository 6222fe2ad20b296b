"""``python -m sdk.demo`` (``make demo``): what Edgewise does on this machine, end to end.

The demo is a list of sections; each is a function that prints its part. A section that
fails prints its error and the demo goes on to the next one. Apps add their sections with
:func:`demo_section` (the lead appends them to ``SECTIONS`` below as the apps land).
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np

from sdk.errors import DependencyMissingError
from sdk.package_files import package_dir

SECTIONS: list[tuple[str, Callable[[], None]]] = []


def demo_section(title: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Decorator: register ``fn`` as a demo section shown under ``title``."""
    def add(fn: Callable[[], None]) -> Callable[[], None]:
        SECTIONS.append((title, fn))
        return fn
    return add


def ppocr_det_model_path() -> Path:
    """The PP-OCRv4 text detector shipped inside the rapidocr-onnxruntime package."""
    folder = package_dir("rapidocr_onnxruntime")
    if folder is None:
        raise DependencyMissingError("the demo model ships with rapidocr-onnxruntime, which is not "
                                     "installed; run `pip install --no-deps rapidocr-onnxruntime` (only its model file "
                                     "is used; `make setup` does this)")
    path = folder / "models" / "ch_PP-OCRv4_det_infer.onnx"
    if not path.is_file():
        raise DependencyMissingError(f"rapidocr-onnxruntime is installed but {path} is missing")
    return path


def _rule(title: str) -> None:
    print(f"\n== {title} " + "=" * max(3, 76 - len(title)))


def run_core_demo() -> None:
    """Device report, then the PP-OCRv4 detector: inspected, run on a rendered page, benchmarked."""
    import cv2

    from sdk.bench import benchmark_model, model_stats
    from sdk.cli.devices import run as devices_run
    from sdk.runtime import Engine, EngineOptions

    _rule("this device (edgewise devices)")
    devices_run(argparse.Namespace(json=False))

    det = ppocr_det_model_path()
    _rule(f"model: PP-OCRv4 text detector ({det.name})")
    st = model_stats(det, {"x": [1, 3, 640, 640]})
    print(f"opset {st.opset}, {st.size_bytes / 2**20:.2f} MiB, {st.params:,} parameters, "
          f"{'?' if st.flops is None else f'{st.flops / 1e9:.2f}'} GFLOPs at 640x640, {st.node_count} nodes")

    page = np.full((640, 640, 3), 255, np.uint8)
    lines = ["Edgewise runs models", "on the device itself", "no cloud round trip"]
    for i, text in enumerate(lines):
        cv2.putText(page, text, (30, 150 + 160 * i), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (20, 20, 20), 4)
    x = ((page.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]
    with Engine(det, EngineOptions(providers=["cpu"])) as eng:
        t0 = time.perf_counter()
        (prob,) = eng.run({"x": x}).values()
        ms = (time.perf_counter() - t0) * 1000
    n, _, boxes, _ = cv2.connectedComponentsWithStats((prob[0, 0] > 0.3).astype(np.uint8))
    regions = [b for b in boxes[1:] if b[4] > 200]
    print(f"rendered a page with {len(lines)} lines of text; the detector found {len(regions)} text "
          f"region(s) in {ms:.0f} ms:")
    for x0, y0, w, h, _ in sorted(regions, key=lambda b: b[1]):
        print(f"  box x={x0} y={y0} w={w} h={h}")

    _rule("benchmark (edgewise bench, 1x3x640x640, 20 runs)")
    rep = benchmark_model(det, EngineOptions(providers=["cpu"]), iters=20, warmup=3,
                          progress=True, input_shapes={"x": [1, 3, 640, 640]})
    print(rep.table())


SECTIONS.append(("SDK core: device, runtime and benchmark", run_core_demo))


def main(argv: list[str] | None = None) -> int:
    """Run every section; return 1 if any failed (after running the rest)."""
    failed = []
    t0 = time.perf_counter()
    for title, fn in SECTIONS:
        print(f"\n#### {title}")
        try:
            fn()
        except Exception as exc:  # a broken section must not hide the others
            failed.append(title)
            print(f"!! section {title!r} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            if "-v" in (argv or sys.argv[1:]):
                traceback.print_exc()
    print(f"\ndemo finished in {time.perf_counter() - t0:.1f} s: {len(SECTIONS) - len(failed)}/"
          f"{len(SECTIONS)} section(s) ok" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
