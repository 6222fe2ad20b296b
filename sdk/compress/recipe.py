"""A recipe: an ordered list of passes, stored as YAML or JSON.

File format (a list, or ``{"passes": [...]}``)::

    - pass: quantize_static
      format: QDQ
      per_channel: true
    - pass: optimize_graph
      level: extended

Unknown pass names and misspelt keys are errors that name the entry.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from pydantic import ValidationError

from sdk.compress.base import PASSES, Pass, PassContext
from sdk.compress.graph_prep import load_model
from sdk.errors import CompressionError, EdgewiseError

logger = logging.getLogger("edgewise")


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
        if name not in PASSES:
            raise ValueError(f"recipe entry {index}: unknown pass {name!r}; known passes: {', '.join(sorted(PASSES))}")
        try:
            return PASSES[name](entry)
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
              work_dir: str | Path | None = None, progress: bool = False, **extra: Any) -> Path:
        """Run every pass in order; CompressionError naming the pass that failed.

        ``extra`` goes to every pass's ``ctx.extra``, with ``source_model`` (the recipe's
        input, the teacher of a ``distill`` pass) added.
        """
        model_in, model_out = Path(model_in), Path(model_out)
        load_model(model_in)  # FileNotFoundError / ModelLoadError naming the file, before any pass
        model_out.parent.mkdir(parents=True, exist_ok=True)
        if not self.passes:
            shutil.copyfile(model_in, model_out)
            return model_out
        tmp = tempfile.TemporaryDirectory(prefix="edgewise-recipe-", dir=work_dir)
        try:
            root = Path(tmp.name)
            current = model_in
            for i, p in enumerate(self.passes):
                last = i == len(self.passes) - 1
                out = model_out if last else root / f"step{i}_{p.name}.onnx"
                scratch = root / f"work{i}"
                scratch.mkdir()
                ctx = PassContext(calib=calib, work_dir=scratch, progress=progress,
                                  extra={"source_model": str(model_in), **extra})
                logger.info("pass %d/%d: %s", i + 1, len(self.passes), p.name)
                try:
                    current = Path(p.run(current, out, ctx))
                except CompressionError as exc:
                    if str(exc).startswith(f"pass {p.name}"):
                        raise
                    raise CompressionError(f"pass {p.name} (step {i + 1} of {len(self.passes)}) failed: {exc}") from exc
                except EdgewiseError:
                    raise
                except Exception as exc:
                    raise CompressionError(f"pass {p.name} (step {i + 1} of {len(self.passes)}) failed: "
                                           f"{type(exc).__name__}: {exc}") from exc
            if current != model_out:
                shutil.copyfile(current, model_out)
            return model_out
        finally:
            tmp.cleanup()


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
