"""Write a new app project from a template, never touching an existing file."""
from __future__ import annotations

import keyword
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from sdk.templates.spec import TemplateSpec

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Names that would shadow what the new app itself imports.
_TAKEN = {"sdk", "apps", "tests", "test", "edgewise", "numpy", "onnx", "onnxruntime", "cv2", "torch",
          "pydantic", "yaml", "scipy", "pytest"}


def check_name(name: str) -> str:
    """NAME must be a lowercase Python package name that shadows nothing it imports."""
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise ValueError(f"NAME must be a valid Python package name (lowercase letters, digits and '_', "
                         f"starting with a letter, not a keyword), got {name!r}; e.g. "
                         f"{re.sub(r'[^a-z0-9_]', '_', name.lower()).strip('_') or 'my_app'!r}")
    if name in _TAKEN or name in sys.stdlib_module_names:
        raise ValueError(f"NAME {name!r} would shadow the module of the same name that the app imports; "
                         "choose another name")
    from importlib.metadata import entry_points

    from sdk.cli.main import SDK_COMMANDS

    groups = set(SDK_COMMANDS) | {ep.name for ep in entry_points(group="edgewise.commands")}
    if name in groups:
        raise ValueError(f"NAME {name!r} is already an `edgewise {name}` command; choose another name")
    return name


def _rename(text: str, pairs: dict[str, str]) -> str:
    for old, new in pairs.items():
        text = text.replace(old, new)
    return text


def _copy_modules(spec: TemplateSpec, name: str, package_out: Path) -> list[str]:
    pairs = spec.all_renames(name)
    copied = []
    for rel in spec.copy_modules:
        src = spec.package_dir / rel
        if src.is_dir():
            files = sorted(src.glob("*.py"))
        elif src.is_file():
            files = [src]
        else:
            raise FileNotFoundError(f"template {spec.name}: module {rel} listed in copy_modules not found in "
                                    f"{spec.package_dir}")
        for f in files:
            dst = package_out / f.relative_to(spec.package_dir)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(_rename(f.read_text(), pairs))
            copied.append(str(dst.relative_to(package_out)))
    return copied


COMMON_FILES = Path(__file__).resolve().parent / "common_files"


def _render_files(spec: TemplateSpec, name: str, project: Path, root: Path) -> list[str]:
    if not root.is_dir():
        raise FileNotFoundError(f"template {spec.name}: files folder {root} not found")
    rendered = []
    for src in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        rel = src.relative_to(root)
        top, rest = rel.parts[0], Path(*rel.parts[1:])
        base = {"root": project, "package": project / name}.get(top)
        if base is None or not rest.parts:
            raise ValueError(f"template {spec.name}: {rel} must be under root/ or package/")
        rest = Path(str(rest).replace("__name__", name).removesuffix(".tmpl"))
        dst = base / rest
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(src.read_text().replace("{{name}}", name).replace("{{template}}", spec.name))
        rendered.append(str(dst.relative_to(project)))
    return rendered


def generate(spec: TemplateSpec, name: str, dest: str | Path = ".") -> Path:
    """Create ``dest/NAME/`` from ``spec``; returns its path.

    Written into a temporary sibling folder and renamed into place at the end, so a failure
    leaves nothing behind, and an existing ``dest/NAME`` (file or folder) is an error.
    """
    check_name(name)
    dest = Path(dest)
    target = dest / name
    if target.exists() or target.is_symlink():
        raise FileExistsError(f"{target} already exists; nothing was written (choose another NAME or --dir)")
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"--dir {dest} is not a folder")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest))
    try:
        (tmp / name).mkdir()
        _copy_modules(spec, name, tmp / name)
        _render_files(spec, name, tmp, COMMON_FILES)         # pyproject.toml, __main__.py
        _render_files(spec, name, tmp, spec.package_dir / spec.files)
        for d in [tmp / name, *[p for p in (tmp / name).rglob("*") if p.is_dir()]]:
            if any(d.glob("*.py")) and not (d / "__init__.py").exists():
                (d / "__init__.py").write_text("")
        if target.exists() or target.is_symlink():   # appeared meanwhile: still never replace it
            raise FileExistsError(f"{target} already exists; nothing was written")
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
