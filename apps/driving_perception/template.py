"""This app as a template for ``edgewise new NAME --from driving_perception``: the detector
(adapters, letterbox, NMS), the ByteTrack tracker and zone alerts copied with renames, trained
on the user's YOLO-format labels by :mod:`yolo_recipe`."""
from pathlib import Path

from sdk.templates import TemplateSpec

TEMPLATE = TemplateSpec(
    name="driving_perception",
    summary="camera monitor: detector trained on YOLO labels, tracking, zone alerts by class and priority",
    package="apps.driving_perception",
    package_dir=Path(__file__).resolve().parent,
    copy_modules=("detect", "detections.py", "track", "sources.py", "zones.py", "zone_watch.py",
                  "yolo_data.py", "yolo_recipe.py"),
    renames={"edgewise drive ": "python -m {{name}} "},
)
