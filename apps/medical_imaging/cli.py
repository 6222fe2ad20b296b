"""``edgewise medical``: triage, evaluate, train, verify-audit.

Registered through the ``edgewise.commands`` entry point (``medical``)."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from sdk.cli import add_command_group


def register(subparsers) -> None:
    sub = add_command_group(subparsers, "medical", help="chest X-ray triage reference app (not a medical device)",
                            description="Chest X-ray triage with quality gate, abstention, worklist and "
                                        "audit. Reference design - not a medical device.")

    t = sub.add_parser("triage", help="triage a file or folder (recursive), or watch a folder")
    t.add_argument("path", help="image/DICOM file or folder")
    t.add_argument("--out", required=True, help="output folder (worklist, report.html, audit.jsonl)")
    t.add_argument("--watch", action="store_true", help="keep polling PATH and triage new files")
    t.add_argument("--interval", type=float, default=2.0, help="watch poll interval, seconds")
    t.add_argument("--max-polls", type=int, default=None, help="stop watching after this many polls")
    t.add_argument("--include-identifiers", action="store_true",
                   help="write file paths and DICOM patient identifiers into the outputs (off by default)")
    t.add_argument("--bundle", action="append", default=None,
                   help="triage bundle(s), served by modality (default: the committed pneumonia bundle)")
    t.add_argument("--max-wait", type=float, default=60.0, help="minutes after which a study is promoted")
    t.add_argument("--max-pixels", type=int, default=50_000_000, help="refuse images above this many pixels")
    t.add_argument("--no-heatmaps", action="store_true")
    t.add_argument("--json", action="store_true", help="print the worklist as JSON")
    t.set_defaults(func=_triage)

    e = sub.add_parser("evaluate", help="teacher vs student vs optimized student on a .npz split")
    e.add_argument("data", help="MedMNIST-style .npz (e.g. pneumoniamnist_28.npz from MedMNIST v2)")
    e.add_argument("--split", default=None, help="val, test or train (default: val, else test)")
    e.add_argument("--iters", type=int, default=200, help="latency iterations per model")
    e.add_argument("--task", default="pneumonia", help="pneumonia (default) or breast")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_evaluate)

    tr = sub.add_parser("train", help="reproduce the committed bundles (torch, about 10 CPU minutes)")
    from apps.medical_imaging.train import add_arguments
    add_arguments(tr)
    tr.set_defaults(func=_train)

    v = sub.add_parser("verify-audit", help="verify an audit.jsonl: hash chain, MACs and keyed checkpoint "
                                            "(exit 1 with the line number if cut, rewritten or damaged)")
    v.add_argument("file")
    v.add_argument("--key", default=None, help="audit key of the device that wrote the log "
                                               "(default: $EDGEWISE_AUDIT_KEY, else this device's)")
    v.add_argument("--chain-only", action="store_true",
                   help="check the hash chain only (no key: a cut tail or a rewritten chain is NOT detected)")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=_verify)


def _triage(args) -> int:
    from apps.medical_imaging.io.loaders import Limits
    from apps.medical_imaging.model import default_bundles
    from apps.medical_imaging.triage import Triage, scan

    path, out = Path(args.path), Path(args.out)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder; give a folder for the worklist, report and audit")
    with _sigterm_as_interrupt(), Triage(
            out, args.bundle or default_bundles(), include_identifiers=args.include_identifiers,
            limits=Limits(max_pixels=args.max_pixels), max_wait_minutes=args.max_wait,
            heatmaps=not args.no_heatmaps) as tri:
        if args.watch:
            if not path.is_dir():
                raise ValueError(f"--watch needs a folder, got a file: {path}")
            print(f"watching {path} (Ctrl-C to stop); outputs in {out}", file=sys.stderr)
            try:
                tri.watch(path, interval=args.interval, max_polls=args.max_polls)
            except KeyboardInterrupt:
                pass
        else:
            tri.run(scan(path, skip=out), progress=True)
        ordered = tri.write_outputs()
    if args.json:
        print(json.dumps([s.model_dump(mode="json", exclude_none=True) for s in ordered], indent=1))
    else:
        counts = {k: sum(s.status == k for s in ordered) for k in ("ok", "abstain", "not_analysed")}
        for i, s in enumerate(ordered[:20]):
            prob = "  -  " if s.probability is None else f"{s.probability:.3f}"
            print(f"{i + 1:3d} {s.priority:8s} {s.status:13s} {prob} {s.study_id} {'; '.join(s.reasons)[:90]}")
        if len(ordered) > 20:
            print(f"... {len(ordered) - 20} more")
        print(f"{len(ordered)} studies ({counts}); report: {out / 'report.html'}")
    return 0


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a service manager stopping the run) ends it like Ctrl-C: the studies done are
    committed and the worklist views are regenerated before the process exits (130)."""
    import signal
    import threading

    def _raise(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    prev = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, prev)


def _evaluate(args) -> int:
    from apps.medical_imaging.evaluate import evaluate, table

    rows = evaluate(args.data, args.split, latency_iters=args.iters, task=args.task)
    print(json.dumps(rows, indent=1) if args.json else table(rows))
    return 0


def _train(args) -> int:
    from apps.medical_imaging.train import run

    return run(args)


def _verify(args) -> int:
    from apps.medical_imaging.audit import verify
    from apps.medical_imaging.audit_key import load_key

    if not Path(args.file).is_file():
        raise FileNotFoundError(f"no such audit file: {args.file}")
    key = None if args.chain_only else (load_key(args.key, create=False) if args.key else "device")
    res = verify(args.file, key)
    if args.json:
        print(json.dumps({"ok": res.ok, "lines": res.lines, "bad_line": res.bad_line, "message": res.message}))
    else:
        print(res.message, file=sys.stdout if res.ok else sys.stderr)
    return 0 if res.ok else 1


def main(argv: list[str] | None = None) -> int:  # python -m apps.medical_imaging.cli
    ap = argparse.ArgumentParser(prog="edgewise")
    register(ap.add_subparsers(dest="command"))
    args = ap.parse_args(["medical", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args) or 0)
