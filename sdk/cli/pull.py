"""``edgewise pull NAME``: download a catalog model into the local cache, verified.

    edgewise pull yolox-nano                 # resumable download, SHA-256 checked, atomic rename
    edgewise pull whisper-tiny-en --trust-on-first-use
    edgewise pull whisper-tiny-en --from ./whisper-tiny.en --trust-on-first-use
                                             # offline: install from a local folder or archive, verified
    edgewise pull --list [--json]            # the catalog, and what is cached

Exit codes (see sdk.cli.main): 0 ok, 2 bad usage, 3 download/integrity failure,
4 offline and not cached.
"""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("pull", help="download a model from the catalog into the local cache",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help="catalog name of the model (see --list)")
    p.add_argument("--list", action="store_true", help="list the catalog and what is cached")
    p.add_argument("--catalog", metavar="FILE", help="extra catalog JSON merged over the built-in one")
    p.add_argument("--cache-dir", metavar="DIR", help="cache folder (default $EDGEWISE_HOME or ~/.cache/edgewise)")
    p.add_argument("--from", dest="source", metavar="PATH",
                   help="install from a local copy (folder, file, zip/.ewb or tar archive) instead of downloading; "
                        "verified exactly like a download")
    p.add_argument("--force", action="store_true", help="download again even if the cached copy is valid")
    p.add_argument("--offline", action="store_true", help="never touch the network (as EDGEWISE_OFFLINE=1)")
    p.add_argument("--trust-on-first-use", action="store_true",
                   help="accept a model without a pinned SHA-256 and record the hash of the first download")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if x < 1024 or unit == "GiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return str(x)


def run(args: argparse.Namespace) -> int:
    from sdk.bundle import ModelStore

    store = ModelStore(cache_dir=args.cache_dir, catalog=args.catalog, offline=True if args.offline else None)
    if args.list:
        items = store.list()
        if args.json:
            print(json.dumps({"cache_dir": str(store.cache_dir), "models": items}, indent=2))
        else:
            print(f"cache: {store.cache_dir}")
            for it in items:
                pin = "" if it["pinned"] else "  (hash not pinned: --trust-on-first-use)"
                print(f"  {it['name']:<20} {it['status']:<10} {_human(it['size']):>10}  {it['licence'] or '?'}{pin}")
        return 0
    if not args.name:
        raise ValueError("give a model NAME to pull, or --list to see the catalog")
    entry = store.entry(args.name)
    status_before = store.status(args.name)
    if args.source:
        path = store.import_from(args.name, args.source, trust_on_first_use=args.trust_on_first_use,
                                 force=args.force)
    else:
        path = store.pull(args.name, progress=not (args.no_progress or args.json), force=args.force,
                          trust_on_first_use=args.trust_on_first_use)
    files = store.hashes(args.name)
    changed = args.force or status_before != "cached"
    result = {"name": entry.name, "path": str(path), "kind": entry.kind, "licence": entry.licence,
              "files": files, "downloaded": changed and not args.source, "offline": store.offline}
    if args.source:
        result["imported_from"] = str(args.source)
        result["imported"] = changed
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        what = ("imported from " + str(args.source) if args.source else "downloaded") if changed else "already cached"
        print(f"{entry.name}: {what} and verified -> {path}")
        for rel, sha in files.items():
            print(f"  {rel}  sha256 {sha}")
    sys.stdout.flush()
    return 0
