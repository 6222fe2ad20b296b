"""ByteTrack on generated box sequences: crossing paths, occlusion, new objects, states."""
import numpy as np

from apps.driving_perception.track import ByteTrack, TrackerOptions, TrackState
from sdk.detect import Detections


def dets(boxes, scores=None, classes=None) -> Detections:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(boxes)
    return Detections(boxes, np.asarray(scores if scores is not None else [0.9] * n),
                      np.asarray(classes if classes is not None else [2] * n))


def box(cx, cy, w=60, h=40):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def ids_by_nearest(out: Detections, centres) -> list[int]:
    c = (out.xyxy[:, :2] + out.xyxy[:, 2:]) / 2
    return [int(out.tracker_id[np.argmin(np.linalg.norm(c - np.asarray(p), axis=1))]) for p in centres]


def test_two_objects_crossing_keep_their_ids():
    tr = ByteTrack()
    seen = []
    for f in range(40):
        a = (100 + 12 * f, 200)          # left -> right
        b = (580 - 12 * f, 210)          # right -> left, crossing at f = 20
        out = tr.update(dets([box(*a), box(*b, w=50, h=36)]))
        if f >= 2:                        # confirmed after min_hits
            assert len(out) == 2
            seen.append(ids_by_nearest(out, [a, b]))
    first = seen[0]
    assert first[0] != first[1]
    assert all(s == first for s in seen), "IDs swapped or changed while crossing"


def test_short_occlusion_keeps_id_and_long_one_does_not():
    tr = ByteTrack(TrackerOptions(max_age=10))
    ids = []
    for f in range(30):
        p = (100 + 8 * f, 300)
        hidden = 10 <= f < 16            # 6 frames < max_age
        out = tr.update(dets([] if hidden else [box(*p)]))
        if hidden:
            assert len(out) == 0, "a track not seen now must not be reported as current"
        elif f >= 1:
            ids.append(int(out.tracker_id[0]))
    assert len(set(ids)) == 1
    # now hide it longer than max_age: it comes back under a new ID
    for _ in range(30, 45):
        tr.update(dets([]))
    assert all(t.state != TrackState.CONFIRMED for t in tr.tracks)
    out1 = tr.update(dets([box(100 + 8 * 45, 300)]))
    out2 = tr.update(dets([box(100 + 8 * 46, 300)]))
    assert len(out1) == 0 and len(out2) == 1 and int(out2.tracker_id[0]) not in ids


def test_new_object_gets_new_id_and_spurious_one_is_never_confirmed():
    tr = ByteTrack()
    for f in range(5):
        out = tr.update(dets([box(100 + 5 * f, 100)]))
    first = int(out.tracker_id[0])
    out = tr.update(dets([box(125, 100), box(400, 300, 80, 60)]))   # a newcomer: tentative
    assert out.tracker_id.tolist() == [first]
    out = tr.update(dets([box(130, 100), box(402, 301, 80, 60)]))
    assert len(out) == 2 and len(set(out.tracker_id.tolist())) == 2 and first in out.tracker_id
    # a one-frame blip never shows up, and leaves no track behind
    out = tr.update(dets([box(135, 100), box(404, 302, 80, 60), box(600, 50, 30, 30)]))
    assert len(out) == 2
    out = tr.update(dets([box(140, 100), box(406, 303, 80, 60)]))
    assert len(tr.tracks) == 2


def test_low_score_detections_continue_a_track():
    tr = ByteTrack()
    ids = []
    for f in range(20):
        score = 0.3 if 8 <= f < 12 else 0.9   # partly occluded: low score, second association
        out = tr.update(dets([box(200 + 6 * f, 150)], [score]))
        if f >= 1:
            assert len(out) == 1
            ids.append(int(out.tracker_id[0]))
    assert len(set(ids)) == 1
    assert tr.update(dets([box(330, 150)], [0.05])).tracker_id.tolist() == []   # below low threshold
