"""Compression passes: the base class, the registry and the per-run context.

A pass is a class with a declared, validated config (a pydantic model whose every field
has a description) that registers itself under a short name::

    @register_pass
    class QuantizeDynamic(Pass):
        name = "quantize_dynamic"
        class Config(PassConfig):
            per_channel: bool = Field(False, description="...")
        def run(self, model_in, model_out, ctx): ...

Passes work on files (``model_in`` -> ``model_out``) because onnxruntime's own tools do,
and because a model with external data is a folder, not a ModelProto.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping

from pydantic import BaseModel, ConfigDict

PASSES: dict[str, type["Pass"]] = {}


class PassConfig(BaseModel):
    """Base for pass configs: unknown keys are an error, values are frozen once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class PassContext:
    """What a pass may need beyond its config.

    ``calib`` yields input feeds (``dict[str, np.ndarray]``) for calibration; ``work_dir``
    is scratch space owned by the caller; ``progress`` turns progress bars on.
    """

    calib: Iterable[Mapping[str, Any]] | None = None
    work_dir: Path | None = None
    progress: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def report(self, key: str, value: Any) -> None:
        """Record what a pass did. ``Recipe.apply(..., reports={})`` shares one dict across
        every step's context, so the caller sees each step's report under its key."""
        self.extra[key] = value
        self.extra.setdefault("reports", {})[key] = value


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
    def run(self, model_in: Path, model_out: Path, ctx: PassContext) -> Path:
        """Read ``model_in``, write the transformed model to ``model_out``, return it."""

    def to_dict(self) -> dict[str, Any]:
        return {"pass": self.name, **self.config.model_dump(mode="json")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({args})"


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
