"""The configuration of one run of the training recipe (:mod:`apps.medical_imaging.train`).

A validated, frozen value that the recipe's steps read (:mod:`apps.medical_imaging.recipe`,
:mod:`apps.medical_imaging.card`), built from the command line by :meth:`TrainConfig.from_args`
with the task's defaults filled in; no step reads an ``argparse.Namespace``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from apps.medical_imaging.tasks import TASKS, Task

__all__ = ["TrainConfig"]


class TrainConfig(BaseModel):
    """What one training run reads. ``norm`` is filled once the training split is loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str = Field("pneumonia", description="a key of apps.medical_imaging.tasks.TASKS")
    data: str = Field(description="the task's .npz (train / val splits)")
    out: Path = Field(Path("apps/medical_imaging/bundles"), description="folder receiving the bundles")
    work: Path | None = Field(None, description="scratch folder (None: a temporary one)")
    seed: int = 0
    teacher_epochs: int = Field(gt=0)
    student_epochs: int = Field(gt=0)
    max_auc_drop: float | None = Field(None, ge=0, le=1, description="AUC budget of the optimize search (None: "
                                       "0.005, or twice the AUC step of one validation sample where that is larger)")
    reuse_teacher: bool = Field(False, description="load WORK/teacher_<task>.pt if present")
    stop_after: Literal["teacher", "student", "all"] = "all"
    ood: tuple[str, ...] = Field((), description="out-of-distribution probe .npz files")
    progress: bool = True
    norm: tuple[float, float] | None = Field(None, description="(mean, std) / 255 of the training images")

    @property
    def task_spec(self) -> Task:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {self.task!r}")
        return TASKS[self.task]

    @property
    def normalization(self) -> tuple[float, float]:
        """``norm``; a ValueError before the training split has been read."""
        if self.norm is None:
            raise ValueError("TrainConfig.norm is not set: it comes from the training split "
                             "(TrainConfig.model_copy(update={'norm': ...}))")
        return self.norm

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        """From the options of :func:`apps.medical_imaging.train.add_arguments`, task defaults filled in."""
        if args.task not in TASKS:
            raise ValueError(f"--task must be one of {sorted(TASKS)}, got {args.task!r}")
        task = TASKS[args.task]
        return cls(task=args.task, data=args.data or task.data, out=Path(args.out),
                   work=Path(args.work) if args.work else None, seed=args.seed,
                   teacher_epochs=args.teacher_epochs or task.teacher_epochs,
                   student_epochs=args.student_epochs or task.student_epochs,
                   max_auc_drop=args.max_auc_drop, reuse_teacher=args.reuse_teacher, stop_after=args.stop_after,
                   ood=tuple(task.ood_probes if args.ood is None else args.ood), progress=not args.no_progress)
