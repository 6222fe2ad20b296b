"""Session and engine options (pydantic, unknown keys are an error)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
               "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class SessionOptions(BaseModel):
    """What onnxruntime's ``SessionOptions`` holds that an application usually sets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intra_op_threads: int | None = Field(None, ge=0,
                                         description="threads inside one operator; None/0: onnxruntime decides")
    inter_op_threads: int | None = Field(None, ge=0, description="threads across operators (parallel mode only)")
    graph_optimization: Literal["disable", "basic", "extended", "all"] = Field(
        "all", description="onnxruntime graph optimization level")
    execution_mode: Literal["sequential", "parallel"] = Field("sequential", description="operator scheduling")
    optimized_model_path: Path | None = Field(
        None, description="save the optimized graph here; when it exists and is newer than the "
                          "model, later engines load it with optimization off (fast start)")
    allow_spinning: bool = Field(
        True, description="let onnxruntime's worker threads busy-wait between operators; turn off "
                          "on a shared or battery-powered device (less CPU burned, slightly higher latency)")
    log_severity_level: int = Field(4, ge=0, le=4, description="onnxruntime's own log level: 0 verbose ... "
                                    "3 error, 4 fatal; errors reach the caller as exceptions anyway")

    def to_ort(self, *, load_optimized: bool = False) -> Any:
        """Build an ``onnxruntime.SessionOptions``.

        ``load_optimized``: the model being loaded is the saved optimized graph, so switch
        optimization off and do not save it again.
        """
        import onnxruntime as ort

        so = ort.SessionOptions()
        if self.intra_op_threads:
            so.intra_op_num_threads = int(self.intra_op_threads)
        if self.inter_op_threads:
            so.inter_op_num_threads = int(self.inter_op_threads)
        level = "disable" if load_optimized else self.graph_optimization
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[level])
        so.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if self.execution_mode == "parallel"
                             else ort.ExecutionMode.ORT_SEQUENTIAL)
        if self.optimized_model_path is not None and not load_optimized:
            so.optimized_model_filepath = str(self.optimized_model_path)
        if not self.allow_spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        so.log_severity_level = self.log_severity_level
        return so


class EngineOptions(BaseModel):
    """Everything an :class:`~sdk.runtime.Engine` needs besides the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: list[str] = Field(default_factory=lambda: ["cpu"],
                                 description="preset names or provider names, in preference order")
    fallback: bool = Field(True, description="fall back to CPU when a requested provider is missing")
    provider_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per preset/provider overrides of the default provider options")
    session: SessionOptions = Field(default_factory=SessionOptions)
    check_finite: bool = Field(False, description="reject NaN/Inf in inputs and outputs")
    warmup: int = Field(1, ge=0, description="runs with zero inputs at construction (dynamic dims -> 1)")
    latency_window: int = Field(10_000, ge=1, description="how many recent call latencies to keep")

    @field_validator("providers", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [p.strip() for p in v.split(",") if p.strip()]
        return v

    @field_validator("providers")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("providers must name at least one preset or provider, e.g. ['cpu']")
        return v
