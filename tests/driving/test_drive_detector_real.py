"""YOLOX-nano FP32 on real frames: cars found where it found them when these goldens were
recorded (apps/driving_perception detector, onnxruntime CPU), IoU >= 0.9 and same class."""
import cv2
import numpy as np
import pytest

from sdk.detect import box_iou

# frame -> [(class_id, score, xyxy)], recorded from a FP32 run of this detector
GOLDEN = {
    "advanced_lane_lines/test_images/test1.jpg": [(2, 0.88, [1050, 404, 1274, 508]), (2, 0.82, [812, 408, 942, 493])],
    "advanced_lane_lines/test_images/test4.jpg": [(2, 0.78, [813, 407, 942, 495]), (2, 0.78, [1046, 402, 1246, 501])],
    "advanced_lane_lines/test_images/test5.jpg": [(2, 0.87, [1084, 400, 1279, 511]), (2, 0.85, [815, 405, 938, 487])],
    "advanced_lane_lines/test_images/test6.jpg": [(2, 0.87, [812, 407, 947, 494]), (2, 0.75, [1011, 406, 1204, 509])],
    "lanelines_p1/test_images/solidYellowCurve.jpg": [(2, 0.85, [834, 292, 927, 349])],
    "advanced_lane_lines/test_images/straight_lines1.jpg": [],
}


@pytest.mark.parametrize("rel", sorted(GOLDEN))
def test_cars_found_where_fp32_finds_them(rel, driving_dir, fp32_detector):
    img = cv2.imread(str(driving_dir / rel))
    assert img is not None, rel
    dets = fp32_detector(img)
    for cid, score, box in GOLDEN[rel]:
        iou = box_iou(np.array([box]), dets.xyxy)[0]
        iou[dets.class_id != cid] = 0
        j = int(np.argmax(iou)) if len(iou) else -1
        assert j >= 0 and iou[j] >= 0.9, f"{rel}: no class-{cid} box with IoU >= 0.9 near {box}"
        assert dets.confidence[j] == pytest.approx(score, abs=0.03)
    if not GOLDEN[rel]:
        assert not (dets.confidence > 0.5).any()
    assert set(dets.class_id.tolist()) <= {0, 1, 2, 3, 5, 7, 9, 11}
    assert (dets.xyxy[:, 2] <= img.shape[1]).all() and (dets.xyxy[:, 3] <= img.shape[0]).all()


def test_tracks_on_the_real_clip_keep_ids(driving_dir, fp32_detector):
    from apps.driving_perception.track import ByteTrack

    cap = cv2.VideoCapture(str(driving_dir / "vehicle_detection" / "test_video.mp4"))
    tr = ByteTrack()
    ids_per_frame = []
    for _ in range(20):
        ok, frame = cap.read()
        assert ok
        ids_per_frame.append(set(tr.update(fp32_detector(frame)).tracker_id.tolist()))
    cap.release()
    # the two cars ahead are tracked throughout under the same two IDs
    steady = set.intersection(*ids_per_frame[2:])
    assert len(steady) >= 2
