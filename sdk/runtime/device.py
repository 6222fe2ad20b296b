"""What this machine is: CPU, ISA features, memory and onnxruntime's providers.

Linux reads ``/proc/cpuinfo`` and ``/proc/meminfo``; elsewhere the fields that cannot be
read cheaply are ``None`` rather than guessed.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

X86_FLAGS = {  # our name -> /proc/cpuinfo flag
    "sse4_2": "sse4_2", "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c",
    "avx512f": "avx512f", "avx512bw": "avx512bw", "avx512_vnni": "avx512_vnni",
    "avx512_bf16": "avx512_bf16", "avx512_fp16": "avx512_fp16", "avx_vnni": "avx_vnni",
    "amx_tile": "amx_tile", "amx_int8": "amx_int8", "amx_bf16": "amx_bf16",
}
ARM_FLAGS = {"neon": "asimd", "fp16": "asimdhp", "dotprod": "asimddp", "i8mm": "i8mm",
             "bf16": "bf16", "sve": "sve", "sve2": "sve2"}


class DeviceInfo(BaseModel):
    """A JSON-serialisable description of the host."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_model: str | None = None
    physical_cores: int | None = None
    logical_cores: int | None = None
    usable_cores: int | None = Field(None, description="CPUs this process may run on (affinity)")
    isa: dict[str, bool] = Field(default_factory=dict)
    memory_total_bytes: int | None = None
    memory_available_bytes: int | None = None
    os: str = ""
    machine: str = ""
    python_version: str = ""
    onnxruntime_version: str = ""
    available_providers: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        """One line: CPU, cores, notable ISA features, memory."""
        feats = [k for k, v in self.isa.items() if v and k in
                 ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx", "neon", "dotprod", "i8mm", "sve")]
        mem = f", {self.memory_total_bytes / 2**30:.1f} GiB" if self.memory_total_bytes else ""
        cores = f"{self.physical_cores or '?'}C/{self.logical_cores or '?'}T"
        cpu = self.cpu_model or self.machine or "unknown CPU"
        return f"{cpu} ({cores}{mem}; {' '.join(feats) or 'no SIMD flags read'})"


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _parse_cpuinfo(text: str) -> tuple[str | None, int | None, set[str]]:
    model = None
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    phys_id = core_id = None
    for line in text.splitlines() + [""]:
        if not line.strip():  # end of one processor block
            if core_id is not None:
                cores.add((phys_id or "0", core_id))
            phys_id = core_id = None
            continue
        key, _, val = line.partition(":")
        key, val = key.strip().lower(), val.strip()
        if key in ("model name", "hardware", "cpu model", "processor") and model is None and val and not val.isdigit():
            model = val
        elif key in ("flags", "features"):
            flags.update(val.split())
        elif key == "physical id":
            phys_id = val
        elif key == "core id":
            core_id = val
    return model, (len(cores) or None), flags


def _meminfo() -> tuple[int | None, int | None]:
    text = _read("/proc/meminfo")
    if text:
        vals = {}
        for line in text.splitlines():
            k, _, v = line.partition(":")
            parts = v.split()
            if parts and parts[0].isdigit():
                vals[k.strip()] = int(parts[0]) * 1024  # kB
        return vals.get("MemTotal"), vals.get("MemAvailable", vals.get("MemFree"))
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    try:
        avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        avail = None
    return total, avail


def _isa(machine: str, flags: set[str]) -> dict[str, bool]:
    m = machine.lower()
    if m in ("x86_64", "amd64", "i386", "i686", "x86"):
        isa = {k: f in flags for k, f in X86_FLAGS.items()}
        isa["amx"] = isa["amx_tile"] or isa["amx_int8"] or isa["amx_bf16"]
        return isa
    if m.startswith(("arm", "aarch64")):
        isa = {k: f in flags for k, f in ARM_FLAGS.items()}
        # ARMv8-A mandates Advanced SIMD; 32-bit kernels call it "neon"
        isa["neon"] = isa["neon"] or "neon" in flags or m in ("arm64", "aarch64")
        return isa
    return {}


def _sysctl(name: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v else None
    except ValueError:
        return None


def discover_device() -> DeviceInfo:
    """Describe the host. Never raises for a missing /proc file; unknown fields are None."""
    import onnxruntime as ort

    machine = platform.machine()
    model: str | None = None
    phys: int | None = None
    flags: set[str] = set()
    text = _read("/proc/cpuinfo")
    if text:
        model, phys, flags = _parse_cpuinfo(text)
    if sys.platform == "darwin":
        model = model or _sysctl("machdep.cpu.brand_string")
        phys = phys or _int(_sysctl("hw.physicalcpu"))
    if not phys and machine.lower().startswith(("arm", "aarch64")) and text:
        phys = os.cpu_count()  # Arm cores have no SMT siblings listed in /proc/cpuinfo
    if not model:
        model = platform.processor() or None
    try:
        usable = len(os.sched_getaffinity(0))  # not on macOS: AttributeError
    except (AttributeError, OSError):
        usable = None
    total, avail = _meminfo()
    return DeviceInfo(
        cpu_model=model, physical_cores=phys, logical_cores=os.cpu_count(), usable_cores=usable,
        isa=_isa(machine, flags), memory_total_bytes=total, memory_available_bytes=avail,
        os=f"{platform.system()} {platform.release()}".strip(), machine=machine,
        python_version=platform.python_version(), onnxruntime_version=ort.__version__,
        available_providers=list(ort.get_available_providers()),
    )
