"""``edgewise devices``: this machine and the execution providers onnxruntime offers."""
from __future__ import annotations

import argparse

from sdk.cli._common import add_json_flag, emit, fmt_bytes, table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("devices", help="show the CPU, ISA features, memory and available providers",
                              description="Show this device and which execution-provider presets work here.")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdk.runtime import PRESETS, discover_device
    from sdk.runtime.providers import display_name

    info = discover_device()
    avail = set(info.available_providers)
    presets = {name: {"provider": prov, "available": prov in avail} for name, prov in PRESETS.items()}
    isa_on = [k for k, v in info.isa.items() if v]
    isa_off = [k for k, v in info.isa.items() if not v]
    rows = [
        ("CPU", info.cpu_model or "unknown"),
        ("cores", f"{info.physical_cores or '?'} physical, {info.logical_cores or '?'} logical"
                  + (f", {info.usable_cores} usable" if info.usable_cores else "")),
        ("ISA", " ".join(isa_on) or "none detected"),
        ("ISA absent", " ".join(isa_off) or "-"),
        ("memory", f"{fmt_bytes(info.memory_total_bytes)} total, {fmt_bytes(info.memory_available_bytes)} available"),
        ("OS", f"{info.os} ({info.machine}), Python {info.python_version}"),
        ("onnxruntime", info.onnxruntime_version),
    ]
    prov_rows = [("preset", "provider", "status")] + [
        (name, prov, "available" if prov in avail else "-") for name, prov in PRESETS.items()]
    human = (table(rows) + "\n\nexecution providers (presets):\n" + table(prov_rows, indent="  ")
             + "\n\nonnxruntime offers: " + ", ".join(display_name(p) for p in info.available_providers))
    emit(args, {"device": info, "presets": presets}, human)
    return 0
