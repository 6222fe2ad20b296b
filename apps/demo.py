"""``python -m apps.demo`` (``make demo``): the SDK core demo, then each reference app.

The SDK never imports the apps; this module sits on top of both. Each app section runs the
app's own ``demo()`` on inputs a fresh machine has (and on the real data in ``../shared``
where it exists) and prints where its outputs are. A failing section is reported and the
demo goes on.
"""
from __future__ import annotations

import sys

from sdk.demo import SECTIONS, main as run_sections

OUT = "/tmp/edgewise-demo"


def _medical() -> None:
    from apps.medical_imaging.demo import demo
    demo(f"{OUT}/medical")


def _driving() -> None:
    from apps.driving_perception.demo import demo
    demo(f"{OUT}/driving")


def _translation() -> None:
    from apps.mobile_translation.demo import demo
    demo(f"{OUT}/translation")


SECTIONS.extend([
    ("Medical imaging: chest X-ray triage", _medical),
    ("Driving perception: detection, tracking, lanes, warnings", _driving),
    ("Mobile translation: offline speech-to-speech, en -> es", _translation),
])

if __name__ == "__main__":
    sys.exit(run_sections(sys.argv[1:]))
