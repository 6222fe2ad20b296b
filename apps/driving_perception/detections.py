"""The road users the app keeps, and their names.

The result type itself is :class:`sdk.detect.Detections` (``xyxy`` in source-image pixels,
``confidence``, ``class_id`` COCO ids, ``tracker_id``): the detector fills the first three
and ``data["class_name"]`` (:func:`with_class_names`), the tracker ``tracker_id``; warnings
and the annotator only read it.
"""
from __future__ import annotations

import numpy as np

from sdk.detect import CLASS_NAME_DATA_FIELD, Detections

# COCO ids (80-class numbering, as YOLOX/YOLOv5/YOLOv8 export them) of the road users kept.
ROAD_USER_CLASSES: dict[int, str] = {
    0: "person", 1: "bicycle", 2: "car", 3: "motorcycle",
    5: "bus", 7: "truck", 9: "traffic light", 11: "stop sign",
}
VEHICLE_CLASSES: frozenset[int] = frozenset({2, 3, 5, 7})


def class_name(class_id: int) -> str:
    return ROAD_USER_CLASSES.get(int(class_id), f"class{int(class_id)}")


def with_class_names(dets: Detections) -> Detections:
    """``dets`` with ``data["class_name"]`` filled from :data:`ROAD_USER_CLASSES` (what
    ``Detections.to_records`` writes as ``class``)."""
    names = np.array([class_name(c) for c in dets.class_id], dtype=object)
    return dets.replace(data={**dets.data, CLASS_NAME_DATA_FIELD: names})
