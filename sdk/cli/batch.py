"""``edgewise batch <job> SRC --out DIR``: run an app's pipeline over an archive on Ray.

The SDK provides the machinery (:mod:`sdk.batch`); the jobs come from the apps. For every
command group registered under the ``edgewise.commands`` entry point, a sibling module
``batch`` in the same package (``apps/medical_imaging/batch.py`` next to
``apps/medical_imaging/cli.py``) is imported if it exists, and its
``register_batch(subparsers)`` adds its jobs. The SDK never names an app.
"""
from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

log = logging.getLogger("edgewise")

from sdk.cli import add_command_group


def batch_modules() -> list:
    """The ``batch`` modules of the installed command groups, in entry-point order."""
    out, seen = [], set()
    for ep in entry_points(group="edgewise.commands"):
        package = ep.value.split(":")[0].rpartition(".")[0]
        name = f"{package}.batch" if package else "batch"
        if not package or name in seen:
            continue
        seen.add(name)
        try:
            out.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                log.warning("could not load batch jobs from %s: %s", name, exc)
        except Exception as exc:  # noqa: BLE001 - a broken app must not take the others down
            log.warning("could not load batch jobs from %s: %s", name, exc)
    return out


def register(subparsers) -> None:
    sub = add_command_group(
        subparsers, "batch", help="run an app's pipeline over an archive with Ray (extra: cluster)",
        dest="batch_job", metavar="JOB",
        description="Batch jobs on Ray Data: one row per item in DIR/results.parquet, resumable. "
                    "Needs `pip install 'edgewise[cluster]'`.")
    for module in batch_modules():
        register_batch = getattr(module, "register_batch", None)
        if callable(register_batch):
            register_batch(sub)
