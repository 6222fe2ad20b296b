"""Calibration data: the input feeds a static quantizer runs through the model.

``CalibrationData`` is a re-iterable source of feeds dicts (``{input_name: np.ndarray}``)
built from a folder of images plus preprocessing, a bundle's preprocessing, a Python
iterable, ``.npy`` / ``.npz`` files, or by running a **stateful** model (a streaming VAD or
RNN) sequentially so that the recurrent-state inputs carry realistic values::

    calib = CalibrationData.stateful("silero_vad.onnx", chunks,
                                     state_map={"state": "stateN"},
                                     constants={"sr": np.array(16000)})

A feed may use the placeholder name ``UNNAMED`` for a model with a single input; it is
renamed with :meth:`CalibrationData.for_model`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from sdk.errors import CompressionError, DecodeError, ModelLoadError
from sdk.progress import (
    progress_bar,
    progress_enabled as progress_enabled,  # re-exported: the search and timing modules use it
)

logger = logging.getLogger("edgewise")

UNNAMED = "__input__"
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv")

Feeds = dict[str, np.ndarray]


class CalibrationData:
    """A re-iterable, optionally limited source of feeds dicts."""

    def __init__(self, feeds: Iterable[Mapping[str, Any]] | Callable[[], Iterable[Mapping[str, Any]]],
                 *, limit: int | None = None, name: str = "feeds"):
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        self._source = feeds
        self._cache: list[Feeds] | None = None
        self.limit = limit
        self.name = name

    # --- constructors -------------------------------------------------------------------
    @classmethod
    def from_iterable(cls, feeds: Iterable[Mapping[str, Any]], limit: int | None = None) -> "CalibrationData":
        return cls(feeds, limit=limit, name="iterable")

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray] | np.ndarray, limit: int | None = None,
                    add_batch_dim: bool = True) -> "CalibrationData":
        """Samples along the first axis of each array; one sample per feed (batch of 1)."""
        if isinstance(arrays, np.ndarray):
            arrays = {UNNAMED: arrays}
        lengths = {k: len(v) for k, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"every array needs the same number of samples on axis 0, got {lengths}")
        n = next(iter(lengths.values()))

        def gen() -> Iterator[Feeds]:
            for i in range(n):
                yield {k: (v[i:i + 1] if add_batch_dim else v[i]) for k, v in arrays.items()}

        return cls(gen, limit=limit, name="arrays")

    @classmethod
    def from_files(cls, path: str | Path, limit: int | None = None, add_batch_dim: bool = True) -> "CalibrationData":
        """``.npz`` (one array per input name, samples on axis 0), ``.npy`` (single input) or a
        folder of ``.npy`` files (one sample each). Never unpickles (``allow_pickle=False``)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"calibration data not found: {path}")
        try:
            if path.is_dir():
                files = sorted(path.glob("*.npy"))
                if not files:
                    raise ValueError(f"{path}: expected .npy files in the folder, found none")
                return cls(lambda: ({UNNAMED: np.load(f, allow_pickle=False)} for f in files),
                           limit=limit, name=str(path))
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
                return cls.from_arrays(arrays, limit=limit, add_batch_dim=add_batch_dim)
            if path.suffix == ".npy":
                return cls.from_arrays(np.load(path, allow_pickle=False), limit=limit, add_batch_dim=add_batch_dim)
        except ValueError as exc:
            if "pickle" in str(exc).lower():
                raise ValueError(f"{path.name}: contains pickled objects, which are refused "
                                 "(expected plain numeric arrays)") from exc
            raise
        raise ValueError(f"{path}: expected a .npz, a .npy or a folder of .npy files")

    @classmethod
    def from_folder(cls, folder: str | Path, preprocess: Any, *, input_name: str | None = None,
                    limit: int | None = 64, video_frames: int = 8) -> "CalibrationData":
        """Images (and evenly spaced frames of videos) in ``folder``, run through ``preprocess``:
        a ``sdk.preprocess.PreprocessSpec`` / ``Preprocessor``, or any callable HWC-BGR -> array."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"calibration folder not found: {folder}")
        fn = preprocess.build() if hasattr(preprocess, "build") else preprocess
        if not callable(fn):
            raise TypeError("preprocess must be a PreprocessSpec, a Preprocessor or a callable, "
                            f"got {type(preprocess)}")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS + VIDEO_EXTS)
        if not files:
            raise ValueError(f"{folder}: expected image files ({', '.join(IMAGE_EXTS)}) or videos, found none")
        key = input_name or UNNAMED

        def gen() -> Iterator[Feeds]:
            for img in iter_images(files, video_frames=video_frames):
                yield {key: np.asarray(fn(img))}

        return cls(gen, limit=limit, name=str(folder))

    @classmethod
    def from_bundle(cls, bundle: Any, folder: str | Path, *, role: str = "model",
                    limit: int | None = 64) -> "CalibrationData":
        """Images in ``folder`` through a bundle's own preprocessing (path or Bundle)."""
        if not hasattr(bundle, "preprocessor"):
            from sdk.bundle import load_bundle

            bundle = load_bundle(bundle)
        entry = bundle.manifest.models[role]
        name = entry.inputs[0].name if entry.inputs else None
        return cls.from_folder(folder, bundle.preprocessor(), input_name=name, limit=limit)

    @classmethod
    def stateful(cls, model_path: str | Path, chunks: Iterable[np.ndarray], *, state_map: Mapping[str, str],
                 constants: Mapping[str, Any] | None = None, input_name: str | None = None,
                 initial_state: Mapping[str, np.ndarray] | None = None, reset_every: int | None = None,
                 limit: int | None = None, progress: bool = False) -> "CalibrationData":
        """Run a stateful model over ``chunks`` in order, feeding each recurrent output back.

        ``state_map`` maps state input -> the output that carries its next value
        (silero VAD: ``{"state": "stateN"}``). ``constants`` are fed unchanged every step
        (``{"sr": np.array(16000)}``). Initial states are zeros of the input's declared
        shape (dynamic dims -> 1) unless ``initial_state`` gives them. ``reset_every`` zeroes
        the state every N chunks (one utterance per reset). The recorded feeds are what the
        model really saw, so calibration covers realistic state ranges.
        """
        import onnxruntime as ort

        constants = {k: np.asarray(v) for k, v in (constants or {}).items()}
        try:
            sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(f"{Path(model_path).name}: onnxruntime could not load the model ({exc})") from exc
        ins = {i.name: i for i in sess.get_inputs()}
        outs = {o.name for o in sess.get_outputs()}
        for s_in, s_out in state_map.items():
            if s_in not in ins:
                raise ValueError(f"state input {s_in!r} is not a model input; inputs are {sorted(ins)}")
            if s_out not in outs:
                raise ValueError(f"state output {s_out!r} is not a model output; outputs are {sorted(outs)}")
        free = [n for n in ins if n not in state_map and n not in constants]
        if input_name is None:
            if len(free) != 1:
                raise ValueError(f"cannot tell which input takes the chunks among {free}; pass input_name=")
            input_name = free[0]

        def zeros(name: str) -> np.ndarray:
            if initial_state and name in initial_state:
                return np.asarray(initial_state[name])
            shape = [d if isinstance(d, int) else 1 for d in ins[name].shape]
            return np.zeros(shape, dtype=np.float32)

        recorded: list[Feeds] = []
        state = {k: zeros(k) for k in state_map}
        for i, chunk in enumerate(progress_bar(chunks, desc="stateful calibration", unit="chunk",
                                               enabled=progress)):
            if limit is not None and len(recorded) >= limit:
                break
            if reset_every and i % reset_every == 0:
                state = {k: zeros(k) for k in state_map}
            chunk = np.asarray(chunk, dtype=np.float32)
            if chunk.ndim == 1:
                chunk = chunk[None]
            feeds = {input_name: chunk, **{k: v.copy() for k, v in state.items()}, **constants}
            recorded.append(feeds)
            result = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
            state = {k: np.asarray(result[v]) for k, v in state_map.items()}
        if not recorded:
            raise ValueError("stateful calibration got no chunks")
        return cls(recorded, limit=limit, name=f"stateful({Path(model_path).name})")

    # --- use ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Feeds]:
        if self._cache is not None:
            yield from self._cache
            return
        src = self._source() if callable(self._source) else self._source
        for i, feeds in enumerate(src):
            if self.limit is not None and i >= self.limit:
                break
            if not isinstance(feeds, Mapping):
                feeds = {UNNAMED: feeds}
            yield {k: np.asarray(v) for k, v in feeds.items()}

    def materialize(self) -> list[Feeds]:
        """All feeds as a list (cached: generators are read once)."""
        if self._cache is None:
            self._cache = list(iter(self))
            if not self._cache:
                raise ValueError(f"calibration data {self.name!r} yielded no samples")
        return self._cache

    def __len__(self) -> int:
        return len(self.materialize())

    def for_model(self, model_path: str | Path, limit: int | None = None) -> list[Feeds]:
        """Feeds renamed/cast for this model's inputs; ValueError when they cannot match."""
        from sdk.compress.graph_prep import load_model

        model = load_model(model_path, check=False, load_external_data=False)
        init = {i.name for i in model.graph.initializer}
        inputs = [vi for vi in model.graph.input if vi.name not in init]
        names = [vi.name for vi in inputs]
        from onnx.helper import tensor_dtype_to_np_dtype

        dtypes = {vi.name: np.dtype(tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)) for vi in inputs}
        out = []
        for feeds in self.materialize()[:limit]:
            if UNNAMED in feeds:
                if len(names) != 1:
                    raise ValueError(f"unnamed calibration arrays need a single-input model; inputs are {names}")
                feeds = {names[0]: feeds[UNNAMED]}
            missing = [n for n in names if n not in feeds]
            if missing:
                raise ValueError(f"calibration feeds lack inputs {missing} (model inputs {names}, "
                                 f"feeds have {sorted(feeds)})")
            out.append({n: feeds[n].astype(dtypes[n], copy=False) for n in names})
        return out


def iter_images(files: Sequence[Path], video_frames: int = 8) -> Iterator[np.ndarray]:
    """Decode images (BGR HWC uint8) and ``video_frames`` evenly spaced frames of each video."""
    import cv2

    for f in files:
        if f.suffix.lower() in VIDEO_EXTS:
            cap = cv2.VideoCapture(str(f))
            try:
                n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or video_frames
                for idx in np.linspace(0, max(n - 1, 0), num=min(video_frames, n)).astype(int):
                    cap.set(cv2.CAP_PROP_POS_FRAMES, int(idx))
                    ok, frame = cap.read()
                    if ok:
                        yield frame
            finally:
                cap.release()
            continue
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise DecodeError(f"{f.name}: not a readable image")
        yield img


class OrtCalibrationReader:
    """Adapter to onnxruntime's ``CalibrationDataReader`` protocol (``get_next`` / ``rewind``)."""

    def __init__(self, feeds: list[Feeds], progress: bool = False, desc: str = "calibrating"):
        from onnxruntime.quantization import CalibrationDataReader

        if not feeds:
            raise CompressionError("static quantization needs calibration data, got 0 samples")
        self._feeds = feeds
        self._it: Iterator[Feeds] | None = None
        self._bar = None
        self._progress, self._desc = progress, desc
        # register as a virtual subclass so ORT's isinstance checks pass
        CalibrationDataReader.register(type(self))

    def get_next(self) -> Feeds | None:
        if self._it is None:
            self._bar = progress_bar(total=len(self._feeds), desc=self._desc, unit="sample",
                                     enabled=self._progress)
            self._it = iter(self._feeds)
        item = next(self._it, None)
        if item is None:
            if self._bar is not None:
                self._bar.close()
        elif self._bar is not None:
            self._bar.update(1)
        return item

    def rewind(self) -> None:
        self._it = None

    def __len__(self) -> int:
        return len(self._feeds)

    def __iter__(self):
        self.rewind()
        return self

    def __next__(self) -> Feeds:
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self._feeds[start_index:end_index])
