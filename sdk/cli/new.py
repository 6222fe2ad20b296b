"""``edgewise new NAME --from TEMPLATE [--dir PATH]``: start a new app from a reference app.

    edgewise new --list                                   # the templates, one line each
    edgewise new wound_triage --from medical_imaging      # writes ./wound_triage/
    edgewise new forklift_watch --from driving_perception --dir ~/projects

The new folder holds an installable package (its CLI group registered through the
``edgewise.commands`` entry point), one config file with the domain knobs, a training
recipe, tests that pass out of the box, and a README listing what to replace.
Exit codes: 0 ok, 2 bad NAME, unknown template, or a target folder that already exists
(nothing is ever overwritten).
"""
from __future__ import annotations

import argparse

from sdk.cli._common import add_json_flag, emit, table


def register(subparsers) -> None:
    p = subparsers.add_parser("new", help="start a new app from a reference app's template",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help="Python package name of the new app (e.g. wound_triage)")
    p.add_argument("--from", dest="template", metavar="TEMPLATE", help="template name (see --list)")
    p.add_argument("--dir", default=".", help="folder receiving NAME/ (default: the current folder)")
    p.add_argument("--list", action="store_true", help="list the templates, one line each")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from sdk.templates import check_name, find_templates, generate, get_template

    if args.list:
        templates = find_templates()
        emit(args, [{"name": t.name, "summary": t.summary} for t in templates.values()],
             table([(t.name, t.summary) for t in templates.values()]) or "no templates installed")
        return 0
    if not args.name or not args.template:
        raise ValueError("give NAME and --from TEMPLATE (e.g. `edgewise new wound_triage --from medical_imaging`),"
                         " or --list")
    check_name(args.name)
    target = generate(get_template(args.template), args.name, args.dir)
    emit(args, {"path": str(target), "template": args.template, "name": args.name},
         f"created {target} from {args.template}\nnext: cd {target} && cat README.md")
    return 0
