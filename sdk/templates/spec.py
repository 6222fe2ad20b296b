"""What an app declares to be a template: which of its modules are copied, which files are
rendered, and which names are renamed."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TemplateSpec(BaseModel):
    """One template (``TEMPLATE = TemplateSpec(...)`` in ``apps/<app>/template.py``).

    The new project is ``NAME/`` holding ``pyproject.toml``, ``README.md``, ``tests/`` and the
    package ``NAME/``: the modules in ``copy`` (paths relative to the app's package folder,
    a folder copies its ``.py`` files) with every rename applied, plus every file under
    ``files`` (``root/`` goes to the project root, ``package/`` into the package), with
    ``{{name}}`` replaced by NAME and a trailing ``.tmpl`` dropped.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(description="template name, as given to --from")
    summary: str = Field(description="one line for `edgewise new --list`")
    package: str = Field(description="dotted package of the reference app, renamed to NAME")
    package_dir: Path = Field(description="folder of that package")
    copy_modules: tuple[str, ...] = Field(description="modules/folders copied with renames")
    files: str = Field("template_files", description="folder (in package_dir) of the rendered files")
    renames: dict[str, str] = Field(default_factory=dict,
                                    description="extra text renames in copied modules ({{name}} allowed)")

    @field_validator("copy_modules")
    @classmethod
    def _relative(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for m in v:
            if m.startswith("/") or ".." in Path(m).parts:
                raise ValueError(f"copy_modules must be paths inside the package, got {m!r}")
        return v

    def all_renames(self, name: str) -> dict[str, str]:
        """Package rename first (dotted and as a path), then the template's own."""
        pairs = {self.package: name, self.package.replace(".", "/"): name}
        pairs.update({k: v.replace("{{name}}", name) for k, v in self.renames.items()})
        return pairs
