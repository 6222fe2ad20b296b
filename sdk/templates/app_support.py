"""Small helpers the generated apps share (public: ``from sdk.templates import ...``).

* :func:`load_config`: the app's one YAML config file into its pydantic model (a misspelt
  key is an error naming the file);
* :func:`require_bundle`: the bundle placeholder: a typed error naming the command that makes
  the bundle, until one is there;
* :func:`run_group`: ``python -m APP ...`` runs the app's command group without installing it,
  with the exit codes of ``edgewise`` (see :mod:`sdk.cli.main`).
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from sdk import errors
from sdk.errors import BundleError

M = TypeVar("M", bound=BaseModel)


def load_config(model: type[M], path: str | Path) -> M:
    """Read the YAML file ``path`` into ``model``; ValueError naming the file and the key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        got = type(data).__name__
        raise ValueError(f"{path} must hold a mapping of settings, got {got}")  # noqa: TRY004 - bad input, exit 2
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"invalid settings in {path}:\n{exc}") from None


def require_bundle(path: str | Path, how_to_make: str) -> Path:
    """``path`` if it holds a bundle (``manifest.json``), else BundleError saying how to make one."""
    path = Path(path)
    if (path / "manifest.json").is_file() or (path.is_file() and path.suffix == ".ewb"):
        return path
    raise BundleError(f"no model bundle at {path} yet (this is the template's placeholder): make one with "
                      f"`{how_to_make}`, or pass --bundle PATH to a bundle you have")


def run_group(register: Callable, group: str, argv: list[str] | None = None) -> int:
    """Run ``group``'s commands from ``register(subparsers)`` with edgewise's exit codes."""
    from sdk.cli.main import add_trusted_key_options, exit_code_for

    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = 0
    while argv and argv[0] in ("-v", "-vv", "--verbose"):   # `python -m APP -v train ...`
        verbose += 1 if argv.pop(0) != "-vv" else 2
    parser = argparse.ArgumentParser(prog=f"python -m {group}")
    register(parser.add_subparsers(dest="command"))
    add_trusted_key_options(parser)
    args = parser.parse_args([group, *argv])
    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2),
                        format="%(levelname)s %(name)s: %(message)s")
    keys = getattr(args, "trusted_key", None)
    try:
        if keys:
            from sdk.bundle.signing import set_trusted_keys

            set_trusted_keys(keys)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (errors.EdgewiseError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
