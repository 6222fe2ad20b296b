"""A batch job: which processor to build on each worker, and what its result rows hold.

The SDK never imports an app: a job names its processor as ``"package.module:Class"`` and
the worker imports it. The processor is built once per worker (so one Engine per worker)
and called once per item::

    class MyProcessor:
        def __init__(self, **kwargs): ...             # load the model(s): runs on the worker
        def process(self, path: Path) -> ItemResult: ...  # one item; bad input -> error=True
        def close(self) -> None: ...
"""
from __future__ import annotations

import importlib
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

BASE_COLUMNS = ("source", "content_sha256", "size_bytes", "mtime_ns", "job", "status", "error", "reasons",
                "model", "model_hash", "hash_ms", "process_ms", "worker")


class ItemResult(BaseModel):
    """What a processor returns for one item."""

    model_config = ConfigDict(extra="forbid")
    status: str = Field(description="the app's own status word (e.g. ok, abstain, not_analysed); "
                                    "'error' when the item could not be processed at all")
    error: bool = Field(False, description="True when the item got no result (unreadable, refused, crashed)")
    reasons: list[str] = Field(default_factory=list)
    model: str | None = Field(None, description="model that produced the result, name@version")
    scores: dict[str, float | None] = Field(default_factory=dict, description="float columns declared by the job")
    fields: dict[str, str | None] = Field(default_factory=dict, description="text columns declared by the job")


class Processor(Protocol):
    def process(self, path: Any) -> ItemResult: ...

    def close(self) -> None: ...


class JobSpec(BaseModel):
    """Everything a worker needs to run a job; JSON-serialisable (it travels to the workers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(description="job name, e.g. 'medical'")
    processor: str = Field(description="'package.module:Class' built once per worker")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="JSON-able constructor arguments")
    model_name: str = Field(description="what the rows name as the model when the processor does not")
    model_hash: str = Field(description="SHA-256 identifying the model(s) and their settings; part of the resume key")
    scores: list[str] = Field(default_factory=list, description="float64 result columns")
    fields: list[str] = Field(default_factory=list, description="string result columns")
    suffixes: list[str] | None = Field(None, description="file suffixes a folder listing keeps (None: all)")
    batch_size: int = Field(16, ge=1, description="items per worker call by default (1 for long items such as clips)")
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved per worker (actor)")
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per worker (actor)")

    @field_validator("processor")
    @classmethod
    def _target(cls, v: str) -> str:
        mod, _, attr = v.partition(":")
        if not mod or not attr:
            raise ValueError(f"processor must look like 'package.module:Class', got {v!r}")
        return v

    @field_validator("scores", "fields")
    @classmethod
    def _no_clash(cls, v: list[str]) -> list[str]:
        clash = sorted(set(v) & set(BASE_COLUMNS))
        if clash:
            raise ValueError(f"job columns {clash} clash with the base columns {list(BASE_COLUMNS)}")
        return v

    def build(self) -> Processor:
        """Import and construct the processor (on a worker, or on the driver for a dry run)."""
        mod, _, attr = self.processor.partition(":")
        cls = getattr(importlib.import_module(mod), attr)
        return cls(**self.kwargs)


def bundles_hash(bundles) -> str:
    """SHA-256 identifying a set of bundles: over each verified bundle's ``manifest.json``,
    which pins the hash of every other file, so a new model, policy or threshold changes it."""
    import hashlib

    from sdk.bundle import load_bundle

    h = hashlib.sha256()
    for b in bundles:
        bundle = load_bundle(b)
        h.update((bundle.path / "manifest.json").read_bytes())
    return h.hexdigest()
