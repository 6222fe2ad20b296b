"""Object detection core: one result type, output adapters, NMS, IoU, matching and F1.

```python
from sdk.detect import Detections, get_adapter, Decoder, DecodeOptions, nms, box_iou, detection_f1
dets = Decoder((416, 416), DecodeOptions(adapter="yolox"))(session_outputs)   # input pixels
dets = dets.map_xyxy(letterbox_transform.to_original)                         # source pixels
f1 = detection_f1(reference_per_image, candidate_per_image, iou_threshold=0.5)
```
"""
from sdk.detect.adapters import (
                                 ADAPTERS,
                                 Adapter,
                                 BoxesScoresAdapter,
                                 Yolov5Adapter,
                                 Yolov8Adapter,
                                 YoloxAdapter,
                                 get_adapter,
                                 register_adapter,
)
from sdk.detect.boxes import box_iou, cxcywh_to_xyxy, xyxy_to_xywh
from sdk.detect.decode import DecodeOptions, Decoder, YoloxDecoder, as_output_list
from sdk.detect.detections import CLASS_NAME_DATA_FIELD, Detections
from sdk.detect.metrics import MatchCounts, detection_counts, detection_f1, f1_score, match_counts, match_detections
from sdk.detect.nms import nms, nms_indices

__all__ = [
    # the result type
    "Detections", "CLASS_NAME_DATA_FIELD",
    # raw outputs -> Detections
    "Adapter", "ADAPTERS", "register_adapter", "get_adapter",
    "YoloxAdapter", "Yolov5Adapter", "Yolov8Adapter", "BoxesScoresAdapter",
    "DecodeOptions", "Decoder", "YoloxDecoder", "as_output_list",
    # geometry and suppression
    "box_iou", "cxcywh_to_xyxy", "xyxy_to_xywh", "nms", "nms_indices",
    # agreement
    "MatchCounts", "match_detections", "match_counts", "detection_counts", "detection_f1", "f1_score",
]
