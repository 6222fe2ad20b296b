"""TrainConfig: the training recipe's options as a validated value, task defaults filled in."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from apps.medical_imaging.tasks import TASKS
from apps.medical_imaging.train import add_arguments
from apps.medical_imaging.train_config import TrainConfig


def _args(*argv: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    return ap.parse_args(list(argv))


def test_from_args_fills_the_task_defaults():
    cfg = TrainConfig.from_args(_args("--task", "breast", "--seed", "3", "--no-progress"))
    task = TASKS["breast"]
    assert cfg.task_spec is task and cfg.data == task.data and cfg.ood == tuple(task.ood_probes)
    assert (cfg.teacher_epochs, cfg.student_epochs) == (task.teacher_epochs, task.student_epochs)
    assert cfg.seed == 3 and cfg.progress is False and cfg.work is None
    assert cfg.out == Path("apps/medical_imaging/bundles") and cfg.stop_after == "all"


def test_explicit_options_win_and_the_value_is_frozen():
    cfg = TrainConfig.from_args(_args("--data", "x.npz", "--student-epochs", "2", "--ood", "--work", "w"))
    assert (cfg.data, cfg.student_epochs, cfg.ood, cfg.work) == ("x.npz", 2, (), Path("w"))
    with pytest.raises(ValidationError):
        cfg.seed = 1   # type: ignore[misc]


def test_norm_must_be_set_before_use_and_keys_are_checked():
    cfg = TrainConfig.from_args(_args())
    with pytest.raises(ValueError, match="norm is not set"):
        _ = cfg.normalization
    assert cfg.model_copy(update={"norm": (0.5, 0.25)}).normalization == (0.5, 0.25)
    with pytest.raises(ValidationError, match="max_auc_drop"):
        TrainConfig(data="x.npz", teacher_epochs=1, student_epochs=1, max_auc_drop=2.0)
    with pytest.raises(ValidationError, match="extra"):
        TrainConfig(data="x.npz", teacher_epochs=1, student_epochs=1, epochs=3)


def test_default_auc_budget_is_one_the_validation_split_can_resolve():
    """0.005 where the split resolves it; else twice the AUC step of one sample of the smaller
    class (optimize refuses a budget under that); a budget asked for is kept as it is."""
    from apps.medical_imaging.recipe import auc_budget
    from sdk.compress import AUC

    def judge(n_pos, n_neg):
        x = np.zeros((n_pos + n_neg, 1, 28, 28), np.float32)
        return AUC(x, np.array([1] * n_pos + [0] * n_neg), output_index=0)

    assert auc_budget(None, judge(1000, 2000)) == 0.005
    assert auc_budget(None, judge(389, 135)) == pytest.approx(2 / 135)
    assert auc_budget(0.003, judge(389, 135)) == 0.003
