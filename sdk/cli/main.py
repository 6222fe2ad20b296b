"""Entry point of the ``edgewise`` command.

Each SDK command lives in its own module under ``sdk.cli`` and exposes
``register(subparsers)``; it adds one sub-command whose ``func(args) -> int`` does the work.
Apps plug in their own command groups (``edgewise medical ...``) through the
``edgewise.commands`` entry-point group, so the SDK never imports an app and a new domain
adds its commands without touching this file.

Exit codes scripts can rely on:
  0 success · 1 the job ran and found a failure (a check failed, a chain is broken)
  2 bad usage or bad input (an output path that cannot be written included) · 3 a
  model/bundle/integrity error (an unsigned or wrongly signed bundle under a trust policy
  included) · 4 unavailable (offline, missing device or provider, missing optional
  dependency) · 130 interrupted

Every command that takes a model or bundle also takes ``--trusted-key PUB.pem``
(repeatable; or ``EDGEWISE_TRUSTED_KEYS``): bundles must then carry a signature by one of
those keys (``edgewise bundle sign``), checked before anything is loaded.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib.metadata import entry_points

from sdk import errors

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MODEL, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

# SDK commands, in the order `edgewise --help` lists them.
SDK_COMMANDS = ["devices", "inspect", "bench", "pull", "optimize", "bundle", "batch", "new"]
# Leaf commands that never load a bundle: no --trusted-key.
NO_BUNDLE_COMMANDS = {"devices", "keygen", "sign", "verify-audit", "new"}


def exit_code_for(exc: BaseException) -> int:
    """Map an exception to the documented exit code."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, (errors.OfflineError, errors.ProviderUnavailableError,
                        errors.AudioDeviceError, errors.DependencyMissingError)):
        return EXIT_UNAVAILABLE
    if isinstance(exc, (errors.ModelLoadError, errors.BundleError, errors.StoreError,
                        errors.CompressionError, errors.InferenceError)):
        return EXIT_MODEL
    if isinstance(exc, (ValueError, OSError, errors.DecodeError, errors.EdgewiseError)):
        return EXIT_USAGE   # OSError: an output path that is a file, read-only, on a full disk...
    return EXIT_FAILED


def _leaf_parsers(parser: argparse.ArgumentParser, name: str = ""):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield name, parser
        return
    for action in subs:
        for child_name, child in action.choices.items():
            yield from _leaf_parsers(child, child_name)


def add_trusted_key_options(parser: argparse.ArgumentParser) -> None:
    """Give every leaf command that may load a bundle a ``--trusted-key`` option."""
    for name, leaf in _leaf_parsers(parser):
        if name in NO_BUNDLE_COMMANDS or "--trusted-key" in leaf._option_string_actions:
            continue
        leaf.add_argument("--trusted-key", action="append", default=None, metavar="PUB.pem",
                          help="refuse bundles not signed by this public key (repeatable; "
                               "also EDGEWISE_TRUSTED_KEYS, paths separated by ':')")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgewise",
        description="On-device AI: run, benchmark and compress ONNX models; reference apps.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SDK_COMMANDS:
        try:
            module = importlib.import_module(f"sdk.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"sdk.cli.{name}":
                raise
            continue  # command not built yet
        module.register(sub)
    for ep in entry_points(group="edgewise.commands"):
        try:
            ep.load()(sub)
        except Exception as exc:  # a broken app must not take the SDK commands down
            logging.getLogger("edgewise").warning("could not load command group %r: %s", ep.name, exc)
    add_trusted_key_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    keys = getattr(args, "trusted_key", None)
    try:
        if keys and getattr(args, "command", None) != "bundle":
            from sdk.bundle.signing import set_trusted_keys

            set_trusted_keys(keys)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (errors.EdgewiseError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    finally:
        if keys and "sdk.bundle.signing" in sys.modules:
            sys.modules["sdk.bundle.signing"].set_trusted_keys(None)   # main() may be called again in-process


if __name__ == "__main__":
    sys.exit(main())
