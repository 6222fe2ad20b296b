"""Structured channel pruning of YOLOX-nano, with and without distillation recovery.

Prints, measured side by side in one run on this machine:
  params, latency ratio vs FP32 (interleaved rounds), and detection F1 against the FP32
  model's own detections (IoU 0.5, same class, score >= 0.3) on held-out real frames,
  before and after a short distillation (KD) from the FP32 model on unlabeled frames, with a
  detection-aware loss on the raw outputs (yolox_kd_loss below).

Data: frames of ../shared/data/driving/*/ (videos + test images). Training uses frames of
solidWhiteRight.mp4 and the first half of vehicle_detection/test_video.mp4 (random 256x256
crops of the letterboxed 416 frame: the network is fully convolutional, crops keep object
scale and cost ~40% of a full frame); evaluation uses the second half of test_video.mp4
and all the still test images, which training never sees.

Pruning: channel importance from calibration activations (criterion="activation"),
groups narrower than --min-group left alone, then least-squares re-fit of the consuming
layers (reconstruct="oneshot"); "F1 pruned" is before that re-fit, "+rec" after it and
"+KD" after distillation on top of the re-fitted model.

    nice -n 10 .venv/bin/python benchmarks/prune_yolox.py --ratios 0.25 0.5 --epochs 3 --train-frames 64
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sdk.compress.distill import FinetuneConfig, finetune_pruned_onnx  # noqa: E402
from sdk.compress.prune_channels import PruneChannelsConfig, count_params, prune_channels  # noqa: E402
from sdk.detect import Detections, YoloxDecoder, detection_f1  # noqa: E402

SHARED = REPO.parent / "shared"
SIZE = 416


# --- data -------------------------------------------------------------------------------------
def letterbox(img: np.ndarray) -> np.ndarray:
    """YOLOX preprocessing: resize into 416x416 keeping aspect, top-left, pad 114; NCHW BGR 0..255."""
    h, w = img.shape[:2]
    r = min(SIZE / h, SIZE / w)
    out = np.full((SIZE, SIZE, 3), 114, np.uint8)
    out[: int(h * r), : int(w * r)] = cv2.resize(img, (int(w * r), int(h * r)), interpolation=cv2.INTER_LINEAR)
    return out.transpose(2, 0, 1).astype(np.float32)


def video_frames(path: Path, step: int = 1) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames, i = [], 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        if i % step == 0:
            frames.append(f)
        i += 1
    cap.release()
    return frames


def load_data(n_train: int, crop: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training crops, the same training frames in full, held-out frames)."""
    drive = SHARED / "data" / "driving"
    lanes = video_frames(drive / "lanelines_p1" / "test_videos" / "solidWhiteRight.mp4", 2)
    cars = video_frames(drive / "vehicle_detection" / "test_video.mp4")
    stills = [cv2.imread(str(p)) for d in ("lanelines_p1/test_images", "advanced_lane_lines/test_images")
              for p in sorted((drive / d).glob("*.jpg"))]
    half = len(cars) // 2
    train_imgs = lanes + cars[:half]
    test_imgs = cars[half:] + stills
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(train_imgs), size=min(n_train, len(train_imgs)), replace=False)
    crops, full = [], []
    for i in pick:
        x = letterbox(train_imgs[i])
        y0, x0 = rng.integers(0, SIZE - crop + 1, 2)
        crops.append(x[:, y0:y0 + crop, x0:x0 + crop])
        full.append(x)
    return np.stack(crops), np.stack(full), np.stack([letterbox(f) for f in test_imgs])


# --- YOLOX decode + agreement -------------------------------------------------------------------
DECODE = YoloxDecoder((SIZE, SIZE), score_thr=0.3, nms_thr=0.45)   # sdk.detect: the evaluators' decoder


def f1_vs_reference(ref: list[Detections], got: list[Detections], iou_thr: float = 0.5) -> float:
    """sdk.detect's detection F1 (greedy, highest IoU first, same class), as the evaluators compute it."""
    return detection_f1(ref, got, iou_thr)


def detect(path_or_model, X: np.ndarray) -> list[Detections]:
    src = path_or_model.SerializeToString() if isinstance(path_or_model, onnx.ModelProto) else str(path_or_model)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return [DECODE(sess.run(None, {"images": x[None]})) for x in X]


def yolox_kd_loss(s, t):
    """Detection-aware KD on raw YOLOX outputs (B, anchors, 4 reg + obj + 80 cls, obj/cls already
    sigmoid): box regression weighted by the teacher's score, BCE on objectness everywhere,
    BCE on classes weighted by the teacher's objectness."""
    import torch

    eps = 1e-6
    w = (t[..., 4] * t[..., 5:].max(-1).values).detach()
    reg = (w[..., None] * (s[..., :4] - t[..., :4]) ** 2).sum() / (4 * w.sum() + eps)
    so, to = s[..., 4].clamp(eps, 1 - eps), t[..., 4]
    obj = -(to * torch.log(so) + (1 - to) * torch.log(1 - so)).mean()
    sc, tc = s[..., 5:].clamp(eps, 1 - eps), t[..., 5:]
    bce_c = -(tc * torch.log(sc) + (1 - tc) * torch.log(1 - sc)).mean(-1)
    cls = (t[..., 4] * bce_c).sum() / (t[..., 4].sum() + eps)
    return reg + 5 * obj + cls


def latency(paths: dict[str, Path], rounds: int, x: np.ndarray, threads: int = 1) -> dict[str, dict[str, float]]:
    """Per model: median and min ms, models interleaved inside every round (same load for all).

    One intra-op thread by default: on a shared, loaded machine that is the least noisy
    comparison; min is the best estimate of the unloaded time, median of the typical one."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = {k: ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    for s in sess.values():
        for _ in range(3):
            s.run(None, {"images": x})
    times: dict[str, list[float]] = {k: [] for k in sess}
    for _ in range(rounds):
        for k, s in sess.items():
            t0 = time.perf_counter()
            s.run(None, {"images": x})
            times[k].append((time.perf_counter() - t0) * 1000)
    return {k: {"median": float(np.median(v)), "min": float(np.min(v))} for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(SHARED / "models" / "yolox_nano_coco_416.onnx"))
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5])
    ap.add_argument("--scope", default="per_layer", choices=["per_layer", "global"])
    ap.add_argument("--min-group", type=int, default=128, help="leave groups narrower than this unpruned")
    ap.add_argument("--reconstruct", default="oneshot", choices=["none", "oneshot", "sequential"])
    ap.add_argument("--criterion", default="activation", choices=["weight", "activation"])
    ap.add_argument("--calib", type=int, default=16, help="frames for least-squares reconstruction")
    ap.add_argument("--train-frames", type=int, default=64)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=3, help="KD epochs (0: no KD)")
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=30, help="interleaved latency rounds")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for KD")
    ap.add_argument("--ort-threads", type=int, default=1, help="onnxruntime intra-op threads for latency")
    ap.add_argument("--out", default="/tmp/edgewise_prune_yolox")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = ap.parse_args(argv)
    model_path = Path(args.model)
    if not model_path.is_file():
        print(f"YOLOX-nano not found at {model_path}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    Xtr, Xfull, Xte = load_data(args.train_frames, args.crop, seed=0)
    calib = [{"images": x[None]} for x in Xfull[:args.calib]]
    print(f"data: {len(Xtr)} training crops {args.crop}px, {len(calib)} calibration frames, "
          f"{len(Xte)} held-out frames", flush=True)
    base = onnx.load(str(model_path))
    ref = detect(model_path, Xte)
    print(f"FP32: {sum(len(r) for r in ref)} detections on held-out frames (score >= 0.3)")
    teacher = None
    if args.epochs > 0:
        import torch

        from sdk.compress.onnx_torch import onnx_to_torch
        torch.set_num_threads(args.threads)
        teacher = onnx_to_torch(base)   # fully convolutional: runs on the crops, matches ORT to ~2e-5
    rows: list[dict] = [{"name": "fp32", "ratio": 0.0, "params": count_params(base), "f1": 1.0,
                         "f1_rec": None, "f1_kd": None, "path": str(model_path)}]
    for r in args.ratios:
        cfg = PruneChannelsConfig(ratio=r, scope=args.scope, min_group=args.min_group, criterion=args.criterion)
        pm, rep = prune_channels(base, cfg, calib=calib)
        p = out / f"yolox_pruned_{r:g}.onnx"
        onnx.save(pm, str(p))
        row = {"name": f"pruned {r:g}", "ratio": r, "params": rep.params_after, "path": str(p),
               "groups_pruned": rep.groups_pruned, "f1": f1_vs_reference(ref, detect(pm, Xte)),
               "f1_rec": None, "f1_kd": None}
        print(f"ratio {r:g}: params {rep.params_before} -> {rep.params_after} ({rep.groups_pruned} groups), "
              f"F1 vs FP32 {row['f1']:.3f}", flush=True)
        if args.reconstruct != "none":
            tr = time.perf_counter()
            pm, rep = prune_channels(base, cfg.model_copy(update={"reconstruct": args.reconstruct}), calib=calib)
            onnx.save(pm, str(out / f"yolox_pruned_{r:g}_rec.onnx"))
            row["f1_rec"] = f1_vs_reference(ref, detect(pm, Xte))
            row["rec_seconds"] = time.perf_counter() - tr
            print(f"ratio {r:g}: {args.reconstruct} reconstruction of {len(rep.reconstructed)} layers on "
                  f"{len(calib)} frames in {row['rec_seconds']:.0f}s, F1 vs FP32 {row['f1_rec']:.3f}", flush=True)
        if teacher is not None:
            cfg = FinetuneConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                                 max_samples=len(Xtr), progress=True)
            tk = time.perf_counter()
            res = finetune_pruned_onnx(pm, teacher, Xtr, cfg, out_path=out / f"yolox_pruned_{r:g}_kd.onnx",
                                       loss_fn=yolox_kd_loss)
            row["f1_kd"] = f1_vs_reference(ref, detect(res.onnx_path, Xte))
            row["kd_seconds"] = time.perf_counter() - tk
            row["kd_loss"] = [round(h["loss"], 5) for h in res.history]
            print(f"ratio {r:g}: KD {args.epochs} epochs in {row['kd_seconds']:.0f}s, loss {row['kd_loss']}, "
                  f"F1 vs FP32 {row['f1_kd']:.3f}", flush=True)
        rows.append(row)
    lat = latency({row["name"]: Path(row["path"]) for row in rows}, args.rounds, Xte[:1], args.ort_threads)
    fp = lat["fp32"]
    print(f"\n{'model':<14}{'params':>10}{'ms med':>9}{'ms min':>9}{'speedup med/min':>17}"
          f"{'F1 pruned':>11}{'F1 +rec':>9}{'F1 +KD':>9}")
    for row in rows:
        row["latency_ms"] = lat[row["name"]]["median"]
        row["latency_min_ms"] = lat[row["name"]]["min"]
        row["speedup"] = fp["median"] / row["latency_ms"]
        row["speedup_min"] = fp["min"] / row["latency_min_ms"]
        rec = f"{row['f1_rec']:.3f}" if row["f1_rec"] is not None else "-"
        kd = f"{row['f1_kd']:.3f}" if row["f1_kd"] is not None else "-"
        sp = f"{row['speedup']:.2f}x/{row['speedup_min']:.2f}x"
        print(f"{row['name']:<14}{row['params']:>10}{row['latency_ms']:>9.2f}{row['latency_min_ms']:>9.2f}{sp:>17}"
              f"{row['f1']:>11.3f}{rec:>9}{kd:>9}")
    print(f"(latency: {args.ort_threads} onnxruntime thread(s), {args.rounds} interleaved rounds; "
          "F1 against FP32 detections, IoU 0.5, "
          f"same class, score >= 0.3; total {time.perf_counter() - t0:.0f}s)")
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
