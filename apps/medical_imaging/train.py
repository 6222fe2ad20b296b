"""Training recipe of the pneumonia triage bundle (reproducible, CPU, about 10 minutes).

    nice python -m apps.medical_imaging.train --task pneumonia --out apps/medical_imaging/bundles

1. teacher: small ResNet (torch) with augmentation (small rotations/shifts/zoom and
   brightness/contrast; no flips, see :func:`train_torch.augment`);
2. student: compact CNN distilled from the teacher with :func:`sdk.compress.distill`,
   exported to ONNX with two outputs (``logits``, ``features``);
3. optimize: :func:`sdk.compress.optimize` searches quantization/graph passes and keeps the
   fastest candidate within the validation-AUC budget, measured on this CPU;
4. calibrate: temperature, operating point (val sensitivity >= 0.95), abstain band, urgent
   level (:mod:`policy`); out-of-distribution reference statistics (:mod:`ood`) checked
   against PathMNIST / BreastMNIST probes;
5. save the student bundle (and the teacher, for ``edgewise medical evaluate``).

Seeds are fixed and torch runs on one thread, so the same command gives the same numbers.
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from apps.medical_imaging.data import load_split, to_input
from apps.medical_imaging.tasks import TASKS
from apps.medical_imaging.train_config import TrainConfig

log = logging.getLogger("edgewise")


def train_teacher(xt, yt, xv, yv, *, seed: int, epochs: int, progress: bool, norm: tuple[float, float]):
    from apps.medical_imaging.nets import TEACHER_WIDTH, Teacher
    from apps.medical_imaging.train_torch import seed_everything, train_classifier

    seed_everything(seed)
    teacher = Teacher(width=TEACHER_WIDTH)
    hist = train_classifier(teacher, to_input(xt, *norm), yt, to_input(xv, *norm), yv, epochs=epochs, lr=3e-3,
                            batch_size=64, seed=seed, progress=progress)
    teacher.eval()
    return teacher, hist


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--task", choices=sorted(TASKS), default="pneumonia")
    ap.add_argument("--data", default=None, help="the task's .npz (default: the task's own)")
    ap.add_argument("--out", default="apps/medical_imaging/bundles", help="folder receiving the bundles")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--teacher-epochs", type=int, default=None, help="default: the task's (pneumonia 15)")
    ap.add_argument("--student-epochs", type=int, default=None, help="default: the task's (pneumonia 12)")
    ap.add_argument("--max-auc-drop", type=float, default=None,
                    help="AUC budget of the optimize search (default: 0.005, or the smallest the validation split "
                         "can resolve: twice the AUC step of one sample of its smaller class)")
    ap.add_argument("--reuse-teacher", action="store_true", help="load WORK/teacher.pt if present")
    ap.add_argument("--stop-after", choices=["teacher", "student", "all"], default="all")
    ap.add_argument("--ood", nargs="*", default=None, help="OOD probe .npz files (default: the task's)")
    ap.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """``edgewise medical train`` / ``python -m apps.medical_imaging.train``: the command-line options
    become a :class:`TrainConfig`, which is what the recipe reads."""
    return train(TrainConfig.from_args(args))


def train(cfg: TrainConfig) -> int:
    from apps.medical_imaging.train_torch import seed_everything

    torch = seed_everything(cfg.seed)
    task = cfg.task_spec
    work = cfg.work or Path(tempfile.mkdtemp(prefix="edgewise_med_"))
    work.mkdir(parents=True, exist_ok=True)
    xt, yt = load_split(cfg.data, "train")
    xv, yv = load_split(cfg.data, "val")
    yt = (yt == task.positive_label).astype(np.int64)
    yv = (yv == task.positive_label).astype(np.int64)
    norm = (round(float(xt.mean()) / 255, 4), round(float(xt.std()) / 255, 4))
    cfg = cfg.model_copy(update={"norm": norm, "work": work})
    log.info("train %s (%s positive), val %s", len(xt), int(yt.sum()), len(xv))

    ckpt = work / f"teacher_{task.name}.pt"
    history: dict = {}
    if cfg.reuse_teacher and ckpt.is_file():
        from apps.medical_imaging.nets import TEACHER_WIDTH, Teacher
        teacher = Teacher(width=TEACHER_WIDTH)
        teacher.load_state_dict(torch.load(ckpt, weights_only=True))
        teacher.eval()
    else:
        teacher, history["teacher"] = train_teacher(xt, yt, xv, yv, seed=cfg.seed, norm=norm,
                                                    epochs=cfg.teacher_epochs, progress=cfg.progress)
        torch.save(teacher.state_dict(), ckpt)
    if cfg.stop_after == "teacher":
        print(json.dumps(history, indent=1))
        return 0

    from apps.medical_imaging.evaluate import table
    from apps.medical_imaging.recipe import build_bundles, write_bundles
    results = build_bundles(teacher, xt, yt, xv, yv, work=work, cfg=cfg, history=history)
    rows = write_bundles(results, cfg)
    print(table(rows))
    for name, r in results.items():
        print(name, json.dumps({k: round(v, 4) for k, v in r["extra"]["ood"]["auroc"].items()}))
    return 0

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
