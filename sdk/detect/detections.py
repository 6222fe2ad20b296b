"""``Detections``: the one result type of object detection (shaped like supervision's).

N boxes as numpy arrays, every one with N rows:

* ``xyxy`` (N, 4) float32: x1, y1, x2, y2 in pixels (of whichever image the producer says);
* ``confidence`` (N,) float32: the score each box was kept with;
* ``class_id`` (N,) int64: the model's class ids;
* ``tracker_id`` (N,) int64 or None: None when nothing tracked them, -1 for a row not tracked;
* ``data``: optional extra per-box arrays, ``{name: array with N rows}``.

Built through the constructor, every field is checked (shape and dtype kind) and cast to
the dtypes above; a wrong one raises :class:`~sdk.errors.InputValidationError` naming the
field, what was expected and what was found. Index it like a numpy array (an int, a slice,
a boolean mask or an index array: always a ``Detections``, one row for an int), or with a
string for one ``data`` array. ``Detections.merge([...])`` concatenates.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from sdk.errors import InputValidationError

__all__ = ["Detections", "CLASS_NAME_DATA_FIELD"]

# the ``data`` key of per-box class names (supervision's convention); ``to_records`` reads it
CLASS_NAME_DATA_FIELD = "class_name"


def _found(arr: Any) -> str:
    if isinstance(arr, np.ndarray):
        return f"shape {arr.shape} dtype {arr.dtype}"
    return f"{type(arr).__name__}"


def _array(name: str, value: Any, kinds: str, kind_text: str, shape: tuple, shape_text: str) -> np.ndarray:
    """``value`` as an array of one of ``kinds`` (numpy dtype kinds) with ``shape`` (-1: any size)."""
    arr = value if isinstance(value, np.ndarray) else None
    if arr is None:
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise InputValidationError(f"{name} must be a np.ndarray with shape {shape_text} of {kind_text}, "
                                       f"but got {_found(value)} ({exc})") from exc
        if arr.dtype == object:
            raise InputValidationError(f"{name} must be a np.ndarray with shape {shape_text} of {kind_text}, "
                                       f"but got {_found(value)} that is not numeric")
    ok_shape = arr.ndim == len(shape) and all(s == -1 or s == d for s, d in zip(shape, arr.shape, strict=False))
    if not ok_shape:
        raise InputValidationError(f"{name} must be a np.ndarray with shape {shape_text}, but got {_found(arr)}")
    if arr.dtype.kind not in kinds and not (arr.size == 0 and arr.dtype.kind in "fiu"):
        raise InputValidationError(f"{name} must hold {kind_text}, but got {_found(arr)}")
    return arr


@dataclass(eq=False)
class Detections:
    """N detections; every array has N rows. ``Detections.empty()`` when there are none."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    tracker_id: np.ndarray | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyxy = _array("xyxy", self.xyxy, "fiu", "real numbers", (-1, 4), "(_, 4)")
        n = len(xyxy)
        conf = _array("confidence", self.confidence, "fiu", "real numbers", (n,), f"({n},)")
        cid = _array("class_id", self.class_id, "iu", "integers", (n,), f"({n},)")
        self.xyxy = xyxy.astype(np.float32, copy=False)
        self.confidence = conf.astype(np.float32, copy=False)
        self.class_id = cid.astype(np.int64, copy=False)
        if self.tracker_id is not None:
            tid = _array("tracker_id", self.tracker_id, "iu", "integers", (n,), f"({n},)")
            self.tracker_id = tid.astype(np.int64, copy=False)
        if not isinstance(self.data, dict):
            raise InputValidationError(f"data must be a dict of per-box arrays, but got {type(self.data).__name__}")
        data = {}
        for key, value in self.data.items():
            arr = np.asarray(value)
            if arr.ndim == 0 or len(arr) != n:
                raise InputValidationError(f"data[{key!r}] must have {n} rows (one per box), but got "
                                           f"{_found(arr)}")
            data[str(key)] = arr
        self.data = data

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def merge(cls, items: Iterable["Detections"]) -> "Detections":
        """All rows of ``items``, in order. Empty ones are skipped; ``tracker_id`` stays None
        only if every non-empty item has None (the others' rows get -1); the ``data`` keys
        must be the same in every non-empty item."""
        parts = [d for d in items if len(d)]
        for d in parts:
            if not isinstance(d, Detections):
                raise InputValidationError(f"merge takes Detections, but got {type(d).__name__}")
        if not parts:
            return cls.empty()
        keys = set(parts[0].data)
        for d in parts[1:]:
            if set(d.data) != keys:
                raise InputValidationError(f"merge needs the same data keys in every item, but got "
                                           f"{sorted(keys)} and {sorted(d.data)}")
        tracked = any(d.tracker_id is not None for d in parts)
        tid = (np.concatenate([d.tracker_id if d.tracker_id is not None else np.full(len(d), -1, np.int64)
                               for d in parts]) if tracked else None)
        return cls(np.concatenate([d.xyxy for d in parts]), np.concatenate([d.confidence for d in parts]),
                   np.concatenate([d.class_id for d in parts]), tid,
                   {k: np.concatenate([d.data[k] for d in parts]) for k in keys})

    def replace(self, **changes: Any) -> "Detections":
        """A copy with some fields replaced, validated again (``dets.replace(tracker_id=ids)``)."""
        return dataclasses.replace(self, **changes)

    def map_xyxy(self, fn: Callable[[np.ndarray], np.ndarray]) -> "Detections":
        """A copy with ``xyxy = fn(xyxy)``: e.g. ``LetterboxTransform.to_original``."""
        return self.replace(xyxy=np.asarray(fn(self.xyxy)) if len(self) else self.xyxy)

    # -- access ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.xyxy)

    def is_empty(self) -> bool:
        return len(self) == 0

    def __getitem__(self, index: Any) -> Any:
        """Rows selected by an int (one row), a slice, a boolean mask or an index array; a
        string returns that ``data`` array."""
        if isinstance(index, str):
            if index not in self.data:
                raise KeyError(f"no data array {index!r}; have {sorted(self.data)}")
            return self.data[index]
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} is out of range for {len(self)} detections")
            index = [i]
        elif not isinstance(index, slice):
            index = np.asarray(index)
            if index.dtype == bool and index.shape != (len(self),):
                raise IndexError(f"a boolean mask must have shape ({len(self)},), but got {index.shape}")
            if index.dtype != bool and index.size == 0:
                index = index.astype(np.int64)
            elif index.dtype.kind not in "biu":
                raise IndexError(f"index with an int, a slice, a boolean mask or integer indices, "
                                 f"but got an array of {index.dtype}")
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index],
                          None if self.tracker_id is None else self.tracker_id[index],
                          {k: v[index] for k, v in self.data.items()})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Detections):
            return NotImplemented
        same_t = ((self.tracker_id is None and other.tracker_id is None) or
                  (self.tracker_id is not None and other.tracker_id is not None
                   and np.array_equal(self.tracker_id, other.tracker_id)))
        return (np.array_equal(self.xyxy, other.xyxy) and np.array_equal(self.confidence, other.confidence)
                and np.array_equal(self.class_id, other.class_id) and same_t
                and set(self.data) == set(other.data)
                and all(np.array_equal(v, other.data[k]) for k, v in self.data.items()))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"Detections(n={len(self)}, classes={sorted(set(self.class_id.tolist()))[:10]}, "
                f"tracked={self.tracker_id is not None}, data={sorted(self.data)})")

    def to_records(self, class_names: Callable[[int], str] | None = None) -> list[dict[str, Any]]:
        """JSON-friendly rows: ``xyxy`` (0.1 px), ``score``, ``class_id``, ``class`` (from
        ``data["class_name"]``, else ``class_names(id)``, else ``"class<id>"``) and ``track_id``
        (None when not tracked)."""
        names = self.data.get(CLASS_NAME_DATA_FIELD)
        tids = self.tracker_id if self.tracker_id is not None else np.full(len(self), -1, np.int64)
        rows = []
        for i, (box, s, c, t) in enumerate(zip(self.xyxy, self.confidence, self.class_id, tids, strict=True)):
            name = (str(names[i]) if names is not None else class_names(int(c)) if class_names is not None
                    else f"class{int(c)}")
            rows.append({"xyxy": [round(float(v), 1) for v in box], "score": round(float(s), 4),
                         "class_id": int(c), "class": name, "track_id": int(t) if t >= 0 else None})
        return rows

    # -- geometry --------------------------------------------------------------------------
    @property
    def area(self) -> np.ndarray:
        """(N,) box areas; inverted boxes count 0."""
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    @property
    def bottom_centers(self) -> np.ndarray:
        """(N, 2) middle of each box's bottom edge (where an object stands on the ground)."""
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, self.xyxy[:, 3]], axis=1)
