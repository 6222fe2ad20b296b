"""Fixtures for the driving app: real frames from ../shared (skipped where absent), fakes."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.skips import dir_or_skip


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> float:
        self.t += dt
        return self.t


class FakeEngine:
    """Duck-typed stand-in for sdk.runtime.Engine returning prepared outputs."""

    def __init__(self, outputs_fn, name: str = "images"):
        self.inputs = [SimpleNamespace(name=name, shape=[1, 3, 416, 416], dtype="float32")]
        self.outputs_fn = outputs_fn
        self.calls = 0
        self.closed = False

    def run_list(self, feeds, output_names=None):
        self.calls += 1
        return self.outputs_fn(self.calls)

    def close(self):
        self.closed = True


def yolox_raw(boxes_cxcywh=(), obj=(), cls=(), scores=(), n_classes: int = 80) -> np.ndarray:
    """A YOLOX raw output [1, 3549, 85] with given anchors set (stride-8 grid, top rows)."""
    out = np.zeros((1, 3549, 5 + n_classes), np.float32)
    for b, o, c, s in zip(boxes_cxcywh, obj, cls, scores, strict=True):
        cx, cy, w, h = b
        gx, gy = int(cx // 8), int(cy // 8)
        a = gy * 52 + gx
        out[0, a, 0:2] = [cx / 8 - gx, cy / 8 - gy]
        out[0, a, 2:4] = [np.log(w / 8), np.log(h / 8)]
        out[0, a, 4] = o
        out[0, a, 5 + c] = s
    return out


@pytest.fixture
def fake_clock():
    return FakeClock()


@pytest.fixture(scope="session")
def driving_dir(shared_dir) -> Path:
    d = shared_dir / "data" / "driving"
    return dir_or_skip(d, f"driving data not found at {d}")


@pytest.fixture(scope="session")
def advanced_images(driving_dir) -> Path:
    return driving_dir / "advanced_lane_lines" / "test_images"


@pytest.fixture(scope="session")
def calibration(driving_dir):
    from apps.driving_perception.lanes import calibrate_camera

    return calibrate_camera(driving_dir / "advanced_lane_lines" / "camera_cal")


@pytest.fixture(scope="session")
def fp32_detector(yolox_path):
    from apps.driving_perception.model import YOLOX_NANO_SHA256, resolve_model, verify_sha256

    verify_sha256(yolox_path, YOLOX_NANO_SHA256)
    det = resolve_model(yolox_path).detector()
    yield det
    det.close()
