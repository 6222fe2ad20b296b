"""A command group: ``edgewise NAME SUBCOMMAND ...`` that prints its help (exit 2) when
called without a subcommand. SDK commands and apps' ``register(subparsers)`` both use it."""
from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_command_group"]


def add_command_group(subparsers: Any, name: str, help: str, dest: str | None = None,
                      metavar: str = "SUBCOMMAND", **parser_kwargs: Any) -> Any:
    """Add the parser ``name`` to ``subparsers`` and return its own subparsers (``dest`` is
    ``<name>_command`` by default). ``parser_kwargs`` go to ``add_parser`` (``description``...)."""
    p: argparse.ArgumentParser = subparsers.add_parser(name, help=help, **parser_kwargs)
    sub = p.add_subparsers(dest=dest or f"{name}_command", metavar=metavar)

    def print_help(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=print_help)
    return sub
