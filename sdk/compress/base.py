"""Compression passes: the base class, the registry and the per-run context.

A pass is a class with a declared, validated config (a pydantic model whose every field
has a description) that registers itself under a short name::

    @register_pass
    class QuantizeDynamic(Pass):
        name = "quantize_dynamic"
        class Config(PassConfig):
            per_channel: bool = Field(False, description="...")
        def run(self, model_in, model_out, ctx) -> PassResult:
            ...
            return PassResult(model_out, {"nodes_quantized": n})

Passes work on files (``model_in`` -> ``model_out``) because onnxruntime's own tools do,
and because a model with external data is a folder, not a ModelProto. ``run`` returns a
:class:`PassResult`: the file it wrote and what it did (a JSON-able dict, shown in the
optimize report). State shared across passes (calibration data, cached layer statistics)
lives in the context's :class:`~sdk.compress.workspace.Workspace`.

Passes of other packages register through the ``edgewise.passes`` entry point group
(``name = "module:PassClass"``); a recipe that names a pass the registry lacks looks it up
there (:func:`find_pass`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import onnx
from pydantic import BaseModel, ConfigDict

from sdk.compress.graph_prep import load_model, save_model
from sdk.compress.workspace import Workspace

PASSES: dict[str, type["Pass"]] = {}


class PassConfig(BaseModel):
    """Base for pass configs: unknown keys are an error, values are frozen once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class PassResult:
    """What a pass returns: the model file it wrote and its report (JSON-able, ``{}`` when
    it has nothing to say)."""

    path: Path
    report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))


class PassContext:
    """What a pass may need beyond its config.

    ``workspace`` holds the calibration data (``ctx.calib``: input feeds,
    ``dict[str, np.ndarray]``) and the caches shared with the other passes of the run;
    ``PassContext(calib=...)`` builds a workspace around the data. ``work_dir`` is scratch
    space owned by the caller; ``progress`` turns progress bars on; ``source_model`` is the
    recipe's input (the default teacher of a ``distill`` pass).
    """

    def __init__(self, calib: Any = None, work_dir: str | Path | None = None, progress: bool = False, *,
                 workspace: Workspace | None = None, source_model: str | Path | None = None):
        if workspace is not None and calib is not None:
            raise ValueError("give either calib or a workspace holding it, not both")
        self.workspace = workspace if workspace is not None else Workspace(calib)
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self.progress = progress
        self.source_model = Path(source_model) if source_model is not None else None

    @property
    def calib(self) -> Any:
        return self.workspace.calib

    def __repr__(self) -> str:
        return (f"PassContext(workspace={self.workspace!r}, work_dir={self.work_dir}, progress={self.progress}, "
                f"source_model={self.source_model})")


class Pass(ABC):
    """One compression step. Subclasses set ``name`` and ``Config`` and implement ``run``."""

    name: ClassVar[str]
    Config: ClassVar[type[PassConfig]] = PassConfig

    def __init__(self, config: PassConfig | Mapping[str, Any] | None = None, **kwargs: Any):
        if isinstance(config, PassConfig):
            if kwargs:
                config = config.model_copy(update=kwargs)
            self.config = self.Config.model_validate(config.model_dump())
        else:
            self.config = self.Config.model_validate({**dict(config or {}), **kwargs})

    @abstractmethod
    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        """Read ``model_in``, write the transformed model to ``model_out``; return it with a report."""

    def to_dict(self) -> dict[str, Any]:
        return {"pass": self.name, **self.config.model_dump(mode="json")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({args})"


class ModelPass(Pass):
    """A pass that rewrites the graph in memory: subclasses implement
    ``transform(model, ctx) -> (model, report)``; reading ``model_in`` (unchecked, so a large
    model is not validated twice), saving and the :class:`PassResult` are done here once.
    ``finish`` may add to the report what needs both files (sizes)."""

    @abstractmethod
    def transform(self, model: onnx.ModelProto, ctx: PassContext) -> tuple[onnx.ModelProto, dict[str, Any]]:
        """Return the rewritten model and what was done."""

    def finish(self, model_in: Path, model_out: Path, report: dict[str, Any]) -> dict[str, Any]:
        return report

    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> PassResult:
        model_in, model_out = Path(model_in), Path(model_out)
        model, report = self.transform(load_model(model_in, check=False), ctx)
        save_model(model, model_out)
        return PassResult(model_out, self.finish(model_in, model_out, report))


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make a pass available to recipes under ``cls.name``."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} must set a class attribute 'name'")
    if cls.name in PASSES and PASSES[cls.name] is not cls:
        raise ValueError(f"a pass named {cls.name!r} is already registered ({PASSES[cls.name].__name__})")
    for fname, finfo in cls.Config.model_fields.items():
        if not finfo.description:
            raise TypeError(f"{cls.__name__}.Config.{fname} needs a description")
    PASSES[cls.name] = cls
    return cls


#: the entry point group through which other packages add passes
ENTRY_POINT_GROUP = "edgewise.passes"


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


def find_pass(name: str) -> type[Pass] | None:
    """The pass registered as ``name``, else the one an installed package declares under the
    ``edgewise.passes`` entry point ``name`` (loaded and registered now); None when neither has it.

    A package declares its passes in its ``pyproject.toml``::

        [project.entry-points."edgewise.passes"]
        my_pass = "my_package.passes:MyPass"
    """
    if name in PASSES:
        return PASSES[name]
    for ep in _entry_points():
        if ep.name != name:
            continue
        try:
            cls = ep.load()
        except Exception as exc:
            raise ValueError(f"pass {name!r}: the entry point {ep.value!r} ({ENTRY_POINT_GROUP}) failed to load: "
                             f"{type(exc).__name__}: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Pass)):
            raise TypeError(f"pass {name!r}: the entry point {ep.value!r} must name a subclass of "
                            f"sdk.compress.Pass, got {cls!r}")
        if getattr(cls, "name", None) != name:
            raise ValueError(f"pass {name!r}: the entry point {ep.value!r} loads a pass named "
                             f"{getattr(cls, 'name', None)!r}; the entry point name and Pass.name must match")
        return PASSES.get(name) or register_pass(cls)
    return None


def available_passes() -> list[str]:
    """Names of the registered passes and of those declared through entry points (not loaded)."""
    return sorted(set(PASSES) | {ep.name for ep in _entry_points()})
