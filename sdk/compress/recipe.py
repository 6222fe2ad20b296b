"""A recipe: an ordered list of passes, stored as YAML or JSON.

File format (a list, or ``{"passes": [...]}``)::

    - pass: quantize_static
      format: QDQ
      per_channel: true
    - pass: optimize_graph
      level: extended

Unknown pass names and misspelt keys are errors that name the entry. A name the registry
lacks is looked up among the ``edgewise.passes`` entry points of installed packages.

``Recipe.apply`` returns a :class:`RecipeResult`: the output file and every step's report.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pydantic import ValidationError

from sdk.compress.base import Pass, PassContext, PassResult, available_passes, find_pass
from sdk.compress.graph_prep import load_model
from sdk.compress.workspace import Workspace
from sdk.errors import CompressionError, EdgewiseError

logger = logging.getLogger("edgewise")


@dataclass(frozen=True)
class RecipeResult:
    """The model a recipe wrote and each step's report, keyed by pass name (a pass that
    appears again gets ``name#2``, ``name#3``...)."""

    path: Path
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)


class Recipe:
    """Passes applied in order, each writing a temporary file that the next one reads."""

    def __init__(self, passes: Sequence[Pass | Mapping[str, Any]] = ()):
        self.passes: list[Pass] = [p if isinstance(p, Pass) else self._build(p, i) for i, p in enumerate(passes)]

    @staticmethod
    def _build(entry: Mapping[str, Any], index: int) -> Pass:
        if not isinstance(entry, Mapping) or "pass" not in entry:
            raise ValueError(f"recipe entry {index}: expected a mapping with a 'pass' key, got {entry!r}")
        entry = dict(entry)
        name = entry.pop("pass")
        cls = find_pass(name)
        if cls is None:
            raise ValueError(f"recipe entry {index}: unknown pass {name!r}; known passes: "
                             f"{', '.join(available_passes())}")
        try:
            return cls(entry)
        except ValidationError as exc:
            raise ValueError(f"recipe entry {index} ({name}): invalid config: {exc}") from exc

    # --- serialisation ------------------------------------------------------------------
    def to_list(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.passes]

    @classmethod
    def from_list(cls, entries: Iterable[Mapping[str, Any]] | Mapping[str, Any]) -> "Recipe":
        if isinstance(entries, Mapping):
            if set(entries) != {"passes"}:
                raise ValueError(f"a recipe is a list of passes or {{'passes': [...]}}, got keys {sorted(entries)}")
            entries = entries["passes"]
        if not isinstance(entries, list):
            raise ValueError(f"a recipe is a list of passes, got {type(entries).__name__}")
        return cls(entries)

    @classmethod
    def from_file(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as exc:
            raise ValueError(f"{path.name}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({exc})") from exc
        try:
            return cls.from_list(data if data is not None else [])
        except ValueError as exc:
            raise ValueError(f"{path.name}: {exc}") from exc

    def to_file(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(self.to_list(), indent=2) + "\n", encoding="utf-8")
        else:
            import yaml

            path.write_text(yaml.safe_dump(self.to_list(), sort_keys=False), encoding="utf-8")
        return path

    def describe(self) -> str:
        """A short one-line description: ``quantize_static(format=QDQ, per_channel=True) > ...``."""
        parts = []
        for p in self.passes:
            d = p.config.model_dump()
            default = type(p.config)().model_dump() if _constructible(type(p.config)) else {}
            changed = {k: v for k, v in d.items() if default.get(k, object()) != v}
            parts.append(p.name + ("(" + ", ".join(f"{k}={_short(v)}" for k, v in changed.items()) + ")"
                                   if changed else ""))
        return " > ".join(parts) or "(no passes)"

    def __len__(self) -> int:
        return len(self.passes)

    def __repr__(self) -> str:
        return f"Recipe({self.passes!r})"

    # --- application ---------------------------------------------------------------------
    def apply(self, model_in: str | Path, model_out: str | Path, calib: Any = None,
              work_dir: str | Path | None = None, progress: bool = False,
              workspace: Workspace | None = None) -> RecipeResult:
        """Run every pass in order; CompressionError naming the pass that failed.

        ``calib`` (or a ``workspace`` holding it and the caches shared with other runs on the
        same data) goes to every pass; the recipe's input is each pass's ``ctx.source_model``.
        """
        model_in, model_out = Path(model_in), Path(model_out)
        if workspace is not None and calib is not None:
            raise ValueError("give either calib or a workspace holding it, not both")
        workspace = workspace if workspace is not None else Workspace(calib)
        load_model(model_in)  # FileNotFoundError / ModelLoadError naming the file, before any pass
        model_out.parent.mkdir(parents=True, exist_ok=True)
        if not self.passes:
            shutil.copyfile(model_in, model_out)
            return RecipeResult(model_out)
        reports: dict[str, dict[str, Any]] = {}
        tmp = tempfile.TemporaryDirectory(prefix="edgewise-recipe-", dir=work_dir)
        try:
            root = Path(tmp.name)
            current = model_in
            for i, p in enumerate(self.passes):
                last = i == len(self.passes) - 1
                out = model_out if last else root / f"step{i}_{p.name}.onnx"
                scratch = root / f"work{i}"
                scratch.mkdir()
                ctx = PassContext(work_dir=scratch, progress=progress, workspace=workspace, source_model=model_in)
                logger.info("pass %d/%d: %s", i + 1, len(self.passes), p.name)
                res = self._run_step(p, i, current, out, ctx)
                current = res.path
                key, n = p.name, 1
                while key in reports:
                    n += 1
                    key = f"{p.name}#{n}"
                reports[key] = res.report
            if current != model_out:
                shutil.copyfile(current, model_out)
            return RecipeResult(model_out, reports)
        finally:
            tmp.cleanup()

    def _run_step(self, p: Pass, i: int, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        where = f"pass {p.name} (step {i + 1} of {len(self.passes)})"
        try:
            res = p.run(model_in, model_out, ctx)
        except CompressionError as exc:
            if str(exc).startswith(f"pass {p.name}"):
                raise
            raise CompressionError(f"{where} failed: {exc}") from exc
        except EdgewiseError:
            raise
        except Exception as exc:
            raise CompressionError(f"{where} failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(res, PassResult):
            raise CompressionError(f"{where}: run() must return a PassResult(path, report), got "
                                   f"{type(res).__name__}")
        return res


def _constructible(cls: type) -> bool:
    try:
        cls()
        return True
    except Exception:
        return False


def _short(v: Any) -> str:
    if isinstance(v, list) and len(v) > 3:
        return f"[{len(v)} items]"
    return str(v)
