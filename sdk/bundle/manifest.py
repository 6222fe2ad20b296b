"""The bundle manifest: what a bundle holds, where it came from, and the hash of every file.

``manifest.json`` sits at the root of a bundle folder. Unknown keys are an error
(``extra="forbid"``) so a misspelt key never passes silently; a new format gets a new
``schema_version``.
"""
from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sdk.bundle.hashing import check_sha256
from sdk.bundle.paths import check_relpath
from sdk.preprocess import PreprocessSpec
from sdk.runtime import TensorSpec

SCHEMA_VERSION: Final = "edgewise.bundle/1"
MANIFEST_NAME = "manifest.json"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(_Frozen):
    """One ONNX model of the bundle, under a role name ("model", "encoder", "decoder"...)."""

    file: str = Field(description="bundle-relative path of the .onnx file")
    inputs: list[TensorSpec] = Field(default_factory=list, description="input signature")
    outputs: list[TensorSpec] = Field(default_factory=list, description="output signature")
    description: str | None = None

    @field_validator("file")
    @classmethod
    def _relpath(cls, v: str) -> str:
        return check_relpath(v, "model file")


class Provenance(_Frozen):
    """Where the model came from: data, recipe, licences, parent model."""

    dataset: str | None = None
    dataset_licence: str | None = None
    recipe: str | None = None
    licence: str | None = None
    source_url: str | None = None
    parent_sha256: str | None = Field(None, description="SHA-256 of the model this one was derived from")
    created_by: str | None = Field(None, description="tool and version that wrote the bundle")
    notes: str | None = None

    @field_validator("parent_sha256")
    @classmethod
    def _sha(cls, v: str | None) -> str | None:
        return None if v is None else check_sha256(v)


class Manifest(_Frozen):
    """Everything a bundle declares. ``files`` is filled by :func:`save_bundle`."""

    schema_version: Literal["edgewise.bundle/1"] = SCHEMA_VERSION
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    task: str = Field(min_length=1, description="classification|detection|vad|asr|translation|...")
    description: str = ""
    models: dict[str, ModelEntry] = Field(min_length=1, description="role -> model")
    labels: list[str] | None = None
    preprocess: PreprocessSpec | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    provenance: Provenance = Field(default_factory=Provenance)
    extra: dict[str, Any] = Field(default_factory=dict, description="app-specific settings")
    files: dict[str, str] = Field(default_factory=dict, description="relpath -> SHA-256, every file but manifest.json")

    @field_validator("files")
    @classmethod
    def _files(cls, v: dict[str, str]) -> dict[str, str]:
        out = {}
        for rel, sha in v.items():
            check_relpath(rel, "file")
            if rel == MANIFEST_NAME:
                raise ValueError(f"{MANIFEST_NAME!r} must not list itself in 'files'")
            out[rel] = check_sha256(sha)
        return out

    @model_validator(mode="after")
    def _models_listed(self) -> "Manifest":
        # An empty ``files`` is a manifest not saved yet; load_bundle requires it complete.
        if self.files:
            missing = sorted(e.file for e in self.models.values() if e.file not in self.files)
            if missing:
                raise ValueError(f"model file(s) {missing} are not listed in 'files' (listed: {sorted(self.files)})")
        return self

    def model(self, role: str = "model") -> ModelEntry:
        """The entry for ``role``; ValueError listing the roles if absent."""
        try:
            return self.models[role]
        except KeyError:
            raise ValueError(f"no model role {role!r} in bundle {self.name!r}; roles: {sorted(self.models)}") from None

    def to_json(self) -> str:
        """``manifest.json`` text: sorted keys, indent 2, trailing newline."""
        import json

        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
