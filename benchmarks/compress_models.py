"""Compression on real models, side by side in one run.

For PP-OCRv4 det (rapidocr-onnxruntime), silero VAD (silero-vad, stateful) and YOLOX-nano
(../shared/models) it prints, against the FP32 model measured in the same interleaved
rounds: ORT-default dynamic INT8, ORT-default static INT8 (QDQ, S8S8, MinMax, per-tensor,
as onnxruntime does with no options) and the choice of ``sdk.compress.optimize`` (speed,
and size-only): latency ratio (>1 = faster), size ratio (>1 = smaller) and metric delta.

Metrics (no labels exist, so all are agreement with the FP32 model):
  PP-OCRv4 det  cosine similarity of the text-probability map (OutputFidelity) on real frames
                with printed text drawn on them, and skimage's scanned page
  silero VAD    1 - mean |p_candidate - p_fp32| of speech probabilities, each model run
                sequentially on held-out utterances with its own recurrent state
  YOLOX-nano    detection F1 at IoU 0.5 against FP32 detections (FrameDetectionAgreement: each model at its
                own input size);
                the search chooses on 14 stills + 32 clip frames, and every row is also scored on frames it
                never saw (mirrored stills and clip frames: "held-out")

Run:  nice .venv/bin/python benchmarks/compress_models.py [--models yolox,ppocr,silero] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sdk.bench import compare_latency, model_file_size  # noqa: E402
from sdk.compress import (  # noqa: E402
    CalibrationData,
    Evaluator,
    FrameDetectionAgreement,
    OptimizeOptions,
    OutputFidelity,
    Recipe,
    YoloxDecoder,
    choose,
    optimize,
)
from sdk.compress.calibration import iter_images  # noqa: E402
from sdk.compress.evaluators import open_session  # noqa: E402

SHARED = REPO.parent / "shared"
DRIVING = SHARED / "data" / "driving"


# --- data --------------------------------------------------------------------------------
def driving_frames(per_video: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(stills: 14 jpgs, video frames: ``per_video`` evenly spaced frames of each clip)."""
    stills = sorted((DRIVING / "lanelines_p1" / "test_images").glob("*.jpg")) + \
        sorted((DRIVING / "advanced_lane_lines" / "test_images").glob("*.jpg"))
    videos = [DRIVING / "lanelines_p1" / "test_videos" / "solidWhiteRight.mp4",
              DRIVING / "vehicle_detection" / "test_video.mp4"]
    return list(iter_images(stills)), list(iter_images(videos, video_frames=per_video))


def yolox_input(img: np.ndarray) -> np.ndarray:
    from sdk.preprocess import letterbox

    out, _ = letterbox(img, (416, 416), pad_value=114)
    return np.ascontiguousarray(out.transpose(2, 0, 1)[None].astype(np.float32))


def ppocr_input(img: np.ndarray, hw: tuple[int, int] = (384, 640)) -> np.ndarray:
    import cv2

    x = cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    x = (x - 0.5) / 0.5
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def speech_16k() -> list[np.ndarray]:
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    out = []
    for f in sorted((SHARED / "data" / "speech" / "ljspeech").glob("*.wav")):
        sr, x = wavfile.read(f)
        x = x.astype(np.float32) / (32768.0 if x.dtype == np.int16 else 1.0)
        if x.ndim > 1:
            x = x.mean(1)
        g = np.gcd(sr, 16000)
        out.append(resample_poly(x, 16000 // g, sr // g).astype(np.float32))
    return out


def chunks_of(x: np.ndarray, n: int = 512) -> list[np.ndarray]:
    return [x[i:i + n][None] for i in range(0, len(x) - n + 1, n)]


class VadAgreement(Evaluator):
    """1 - mean |p - p_fp32| over held-out utterances, each model carrying its own state."""

    name = "vad_prob_agreement"

    def __init__(self, reference: Path, utterances: list[np.ndarray]):
        self.utts = [chunks_of(u) for u in utterances]
        self.ref = self.probs(reference)

    def probs(self, model: Path) -> np.ndarray:
        sess = open_session(model)
        out = []
        for chunks in self.utts:
            state = np.zeros((2, 1, 128), np.float32)
            for c in chunks:
                p, state = sess.run(["output", "stateN"], {"input": c, "state": state, "sr": np.array(16000)})
                out.append(float(np.asarray(p).reshape(-1)[0]))
        return np.asarray(out)

    def evaluate(self, model_path) -> float:
        return 1.0 - float(np.abs(self.probs(Path(model_path)) - self.ref).mean())


# --- ORT defaults ------------------------------------------------------------------------
def ort_default_dynamic(model: Path, out: Path) -> Path:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(model), str(out))
    return out


def ort_default_static(model: Path, out: Path, feeds: list[dict]) -> Path:
    from onnxruntime.quantization import quantize_static

    class Reader:
        def __init__(self):
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(model), str(out), Reader())
    return out


# --- one model ---------------------------------------------------------------------------
def run_model(name: str, model: Path, calib: CalibrationData, evaluator: Evaluator, out: Path,
              extra: dict | None = None, rounds: int = 7, input_shapes: tuple = (), max_drop: str = "1%",
              holdout: Evaluator | None = None, also: tuple[str, ...] = ()) -> dict:
    t0 = time.time()
    opts = OptimizeOptions(out_dir=out / name, progress=True, budget={"max_drop": max_drop},
                           latency={"rounds": rounds, "iters": 10}, sensitivity={"evals": 6, "keep_float_k": (2,)},
                           candidates={"extra": extra or {}, "input_shapes": input_shapes})
    res = optimize(model, calib, evaluator, opts)
    ok = [c for c in res.candidates if c.ok and c.name != "fp32"]
    size_pick, size_note = choose(res.baseline, ok, size_only=True, min_speedup=1.05)
    # ORT defaults, measured side by side with FP32 and the choice
    paths = {"fp32": model}
    ort_rows = {}
    for label, fn in [("ort_dynamic", lambda p: ort_default_dynamic(model, p)),
                      ("ort_static", lambda p: ort_default_static(model, p, calib.for_model(model, 64)))]:
        p = out / name / f"{label}.onnx"
        try:
            fn(p)
            ort_rows[label] = {"metric": float(evaluator(p))}
            paths[label] = p
        except Exception as exc:  # noqa: BLE001 - recorded, the row says why
            ort_rows[label] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    same = {"chosen": res.chosen.path, "size_only": size_pick.path}
    named = {c.name: c for c in res.candidates if c.ok and c.name in also}   # timed beside the others
    same.update({name: c.path for name, c in named.items()})
    for label, p in same.items():
        if Path(p) != Path(model):
            paths[label] = p
    feeds = calib.for_model(model, 1)[0]
    lat = compare_latency(paths, feeds, "cpu", rounds=max(rounds, 9), iters=10, sessions=3).medians()
    for label in same:  # the input model itself: one measurement, not two noisy ones
        lat.setdefault(label, lat["fp32"])
        paths.setdefault(label, model)
    base_metric = res.baseline.metric
    rows = {}
    for label in ["fp32", "ort_dynamic", "ort_static", "chosen", "size_only", *named]:
        if label not in paths:
            rows[label] = ort_rows[label]
            continue
        metric = {"fp32": base_metric, "chosen": res.chosen.metric, "size_only": size_pick.metric,
                  **{n: c.metric for n, c in named.items()}}.get(label, ort_rows.get(label, {}).get("metric"))
        rows[label] = {"speedup": lat["fp32"] / lat[label], "latency_ms": lat[label],
                       "size_ratio": model_file_size(model) / model_file_size(Path(paths[label])),
                       "metric": metric, "delta": metric - base_metric}
    if holdout is not None:  # the search chose on `evaluator`'s frames: check the picks on frames it never saw
        for label, row in rows.items():
            if label in paths:
                row["holdout"] = float(holdout(Path(paths[label])))
    rows["chosen"]["recipe"] = res.chosen.name
    rows["size_only"]["recipe"] = size_pick.name
    return {"model": name, "metric": res.metric_name, "budget": max_drop, "rows": rows, "note": res.note,
            "size_note": size_note,
            "search_s": round(time.time() - t0, 1), "report": str(out / name / "report.md")}


def bench_yolox(out: Path, with_prune: bool = True) -> dict:
    model = SHARED / "models" / "yolox_nano_coco_416.onnx"
    stills, video = driving_frames(per_video=32)
    calib = CalibrationData([{"images": yolox_input(f)} for f in video[0::2]])          # 32 video frames
    # 14 stills + 32 other frames, each model fed at its own input size and judged in frame
    # pixels, so the rectangular-input candidate (all frames are 16:9) is compared fairly
    ev = FrameDetectionAgreement(model, stills + video[1::2],
                                 decoder_factory=lambda hw: YoloxDecoder(hw, score_thr=0.3))
    # structured pruning (the prune helper's pass) needs fine-tuning to keep F1: distill from FP32
    # on the calibration frames, then optionally quantize
    prune = {"pass": "prune_channels", "ratio": 0.25}
    kd = {"pass": "distill", "epochs": 4, "batch_size": 8, "lr": 5e-4, "max_samples": 64}
    extra = {} if not with_prune else {
        "prune25_distill": Recipe([prune, kd]),
        "prune25_distill_qop_pc": Recipe([prune, kd, {"pass": "quantize_static", "format": "QOperator",
                                                      "per_channel": True, "reduce_range": True}]),
    }
    # held out from the search: the stills and other clip frames, mirrored (new inputs, same scenes)
    _, more = driving_frames(per_video=20)
    holdout = FrameDetectionAgreement(model, [np.ascontiguousarray(f[:, ::-1]) for f in stills + more],
                                      decoder_factory=lambda hw: YoloxDecoder(hw, score_thr=0.3))
    # budget = the target: detection F1 against FP32 of at least 0.95
    return run_model("yolox_nano", model, calib, ev, out, extra, input_shapes=([1, 3, 256, 416],), max_drop="5%",
                     holdout=holdout)


def with_text(img: np.ndarray, seed: int) -> np.ndarray:
    """A real frame with a few lines of printed text drawn on it (the driving frames have almost
    none, and a text detector's probability map on a text-free frame is ~0 everywhere)."""
    import cv2

    rng = np.random.default_rng(seed)
    out = img.copy()
    h, w = out.shape[:2]
    words = ["SPEED LIMIT 65", "EXIT 42 Main St", "NO PARKING", "Truck Route", "Edgewise 2026", "STOP",
             "Oakland 12 mi", "Rest Area", "KEEP RIGHT", "Toll Plaza 1/2"]
    for _ in range(4):
        text = words[rng.integers(len(words))]
        scale = float(rng.uniform(0.8, 2.0))
        x, y = int(rng.uniform(0, w * 0.6)), int(rng.uniform(h * 0.1, h * 0.9))
        colour = (255, 255, 255) if rng.random() < 0.5 else (20, 20, 20)
        cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, max(1, int(scale * 2)), cv2.LINE_AA)
    return out


def bench_ppocr(out: Path, adaround: bool = False) -> dict:
    from skimage import data as skd

    from sdk.demo import ppocr_det_model_path

    model = ppocr_det_model_path()   # located, not imported: installed without its dependencies
    stills, video = driving_frames(per_video=6)
    gray = [skd.text(), skd.page()]
    text_imgs = [np.repeat(g[..., None], 3, 2) for g in gray]
    calib = CalibrationData([{"x": ppocr_input(with_text(f, i))} for i, f in enumerate(video)]
                            + [{"x": ppocr_input(text_imgs[0])}])
    evalset = [ppocr_input(with_text(f, 100 + i)) for i, f in enumerate(stills)] + [ppocr_input(text_imgs[1])]
    ev = OutputFidelity(model, [{"x": x} for x in evalset], metric="cosine")
    # held out from calibration and from the search's choice: mirrored stills and other clip
    # frames, with other text drawn on them
    _, more = driving_frames(per_video=10)
    held = [ppocr_input(np.ascontiguousarray(with_text(f, 200 + i)[:, ::-1])) for i, f in enumerate(stills + more)]
    holdout = OutputFidelity(model, [{"x": x} for x in held], metric="cosine")
    extra = {}
    if adaround:   # the longer AdaRound (100 steps a block on 32 frames; ~20 min on 2 busy cores)
        extra["folded_int8_adaround100"] = Recipe([{"pass": "fold_affine"}, {"pass": "quantize_int8",
                                                "reconstruct": "adaround", "reconstruct_iters": 100}])
    return run_model("ppocr_v4_det", model, calib, ev, out, extra=extra, holdout=holdout,
                     also=("folded_fp32_optimized", "folded_int8_reconstructed", "folded_int8_adaround", *extra))


def bench_silero(out: Path) -> dict:
    import silero_vad

    model = Path(silero_vad.__file__).parent / "data" / "silero_vad.onnx"
    utts = speech_16k()
    calib_utts, eval_utts = utts[:14], utts[14:]
    recorded = []
    for u in calib_utts:  # stateful: one state trajectory per utterance, fed back every chunk
        recorded += CalibrationData.stateful(model, chunks_of(u), state_map={"state": "stateN"},
                                             constants={"sr": np.array(16000, dtype=np.int64)}).materialize()
    step = max(1, len(recorded) // 400)
    calib = CalibrationData(recorded[::step][:400], name="silero stateful")
    ev = VadAgreement(model, eval_utts)
    # the weights live inside If(sr == 16000) subgraphs, which quantizers skip: specialize first
    spec = {"pass": "specialize_inputs", "constants": {"sr": 16000}}
    extra = {
        "specialized_fp32": Recipe([spec]),
        "specialized_dynamic": Recipe([spec, {"pass": "quantize_dynamic"}]),
        "specialized_static_qdq": Recipe([spec, {"pass": "quantize_static", "calibration_samples": 400}]),
        "specialized_static_qop_pc": Recipe([spec, {"pass": "quantize_static", "format": "QOperator",
                                                    "per_channel": True, "calibration_samples": 400}]),
        "specialized_static_conv_only": Recipe([spec, {"pass": "quantize_static", "format": "QOperator",
                                                       "op_types_to_quantize": ["Conv"], "per_channel": True,
                                                       "calibration_samples": 400}]),
        "specialized_fp16": Recipe([spec, {"pass": "fp16"}]),
        "specialized_weights_int8": Recipe([spec, {"pass": "quantize_weights"}]),
    }
    return run_model("silero_vad", model, calib, ev, out, extra)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="yolox,ppocr,silero")
    ap.add_argument("--out", default="/tmp/edgewise-compress-bench")
    ap.add_argument("--no-prune", action="store_true", help="YOLOX: skip the prune+distill candidates (slow)")
    ap.add_argument("--adaround", action="store_true", help="PP-OCR: also try AdaRound reconstruction (~20 min)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    results = []
    for m in args.models.split(","):
        fn = {"yolox": lambda o: bench_yolox(o, not args.no_prune), "ppocr": lambda o: bench_ppocr(o, args.adaround),
              "silero": bench_silero}[m.strip()]
        try:
            results.append(fn(out))
        except Exception as exc:  # noqa: BLE001 - one model failing must not hide the others
            logging.exception("benchmark %s failed", m)
            results.append({"model": m, "error": str(exc)})
        print_table(results[-1:])
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print("\n=== summary (ratios vs FP32 in the same interleaved run; speedup >1 = faster, size >1 = smaller) ===")
    print_table(results)
    return 0


def print_table(results: list[dict]) -> None:
    for r in results:
        if "error" in r:
            print(f"\n{r['model']}: FAILED: {r['error']}")
            continue
        print(f"\n{r['model']}  (metric: {r['metric']}; budget: drop <= {r.get('budget', '1%')}; "
              f"search {r['search_s']} s; report {r['report']})")
        held = any("holdout" in row for row in r["rows"].values())
        print(f"  {'variant':<26} {'recipe':<26} {'latency ms':>10} {'speedup':>8} {'size':>7} {'metric':>8} "
              f"{'delta':>8}"
              + (f" {'held-out':>9}" if held else ""))
        for label, row in r["rows"].items():
            if "error" in row:
                print(f"  {label:<26} FAILED: {row['error']}")
                continue
            print(f"  {label:<26} {row.get('recipe', ''):<26} {row['latency_ms']:>10.2f} {row['speedup']:>7.2f}x "
                  f"{row['size_ratio']:>6.2f}x {row['metric']:>8.4f} {row['delta']:>+8.4f}"
                  + (f" {row['holdout']:>9.4f}" if "holdout" in row else ""))
        print(f"  optimizer: {r['note']}")
        print(f"  size-only: {r['size_note']}")


if __name__ == "__main__":
    sys.exit(main())
