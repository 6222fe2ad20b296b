"""The app's side of detections: road-user class names in the records it writes."""
import numpy as np

from apps.driving_perception.detections import ROAD_USER_CLASSES, class_name, with_class_names
from sdk.detect import Detections


def test_records_name_road_users():
    d = Detections(np.array([[0, 0, 10, 20], [5, 5, 15, 15]], float), np.array([0.9, 0.4]), np.array([2, 0]),
                   np.array([7, -1]))
    named = with_class_names(d)
    sub = named[named.confidence > 0.5]
    assert len(sub) == 1 and sub.tracker_id[0] == 7 and sub["class_name"].tolist() == ["car"]
    recs = named.to_records()
    assert recs[0]["class"] == "car" and recs[0]["track_id"] == 7 and recs[1]["track_id"] is None
    assert recs[1]["class"] == "person" and recs[0]["xyxy"] == [0.0, 0.0, 10.0, 20.0]
    assert class_name(4) == "class4" and ROAD_USER_CLASSES[7] == "truck"
    assert len(with_class_names(Detections.empty())) == 0
