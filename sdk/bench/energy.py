"""Energy per inference: RAPL/powercap where readable, otherwise a labelled estimate.

RAPL counters (``/sys/class/powercap/intel-rapl:N/energy_uj``, package domains, also on
recent AMD) wrap at ``max_energy_range_uj``; most kernels make them root-only, in which
case the estimate is used. The estimate is process CPU time x an assumed power per busy
core, and says so in ``note`` and ``source="estimate"``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict

from sdk._log import logger

POWERCAP = Path("/sys/class/powercap")
#: assumed package power per fully busy core, in watts (a mid-range laptop/edge x86 core)
ASSUMED_WATTS_PER_CORE = 6.0


class EnergyReading(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    joules_per_inference: float | None
    joules_total: float | None = None
    inferences: int = 0
    source: Literal["rapl", "estimate"]
    note: str = ""

    def __str__(self) -> str:
        if self.joules_per_inference is None:
            return f"n/a ({self.note})"
        tag = " (estimate)" if self.source == "estimate" else " (RAPL)"
        return f"{self.joules_per_inference * 1000:.3f} mJ/inference{tag}"


def _rapl_domains(root: Path = POWERCAP) -> list[Path]:
    """Top-level package domains (intel-rapl:0, intel-rapl:1; not the :0:0 sub-zones)."""
    try:
        zones = sorted(root.glob("intel-rapl:*"))
    except OSError:
        return []
    return [z for z in zones if z.name.count(":") == 1 and (z / "energy_uj").exists()]


def _read_uj(zone: Path) -> int:
    return int((zone / "energy_uj").read_text().strip())


def _max_uj(zone: Path) -> int | None:
    try:
        return int((zone / "max_energy_range_uj").read_text().strip())
    except (OSError, ValueError):
        return None


def rapl_delta_uj(before: int, after: int, max_range: int | None) -> int:
    """Energy between two readings of one counter, across one wraparound."""
    if after >= before:
        return after - before
    if max_range:
        return after + max_range + 1 - before
    return 0


class EnergyMeter:
    """Measure a span: ``with EnergyMeter() as m: ...; reading = m.reading(n_inferences)``.

    ``watts_per_core`` is the assumption behind the estimate (ignored with RAPL).
    """

    def __init__(self, watts_per_core: float = ASSUMED_WATTS_PER_CORE, powercap_root: Path = POWERCAP):
        self.watts_per_core = watts_per_core
        self._zones = _rapl_domains(powercap_root)
        self._before: list[int] | None = None
        self._after: list[int] | None = None
        self._cpu0 = self._cpu1 = self._wall0 = self._wall1 = 0.0
        self.source: Literal["rapl", "estimate"] = "estimate"
        self._why = "no RAPL/powercap counters on this host"
        if self._zones:
            try:
                [_read_uj(z) for z in self._zones]
                self.source = "rapl"
            except PermissionError:
                self._why = "RAPL counters exist but are not readable (root only)"
            except (OSError, ValueError) as exc:
                self._why = f"RAPL counters unreadable ({exc})"

    def start(self) -> "EnergyMeter":
        if self.source == "rapl":
            try:
                self._before = [_read_uj(z) for z in self._zones]
            except (OSError, ValueError) as exc:
                logger.info("RAPL read failed (%s); falling back to the estimate", exc)
                self.source, self._why = "estimate", f"RAPL read failed ({exc})"
        self._cpu0, self._wall0 = time.process_time(), time.perf_counter()  # all threads' CPU time
        return self

    def stop(self) -> None:
        self._cpu1, self._wall1 = time.process_time(), time.perf_counter()
        if self.source == "rapl":
            try:
                self._after = [_read_uj(z) for z in self._zones]
            except (OSError, ValueError) as exc:
                self.source, self._why = "estimate", f"RAPL read failed ({exc})"

    def __enter__(self) -> "EnergyMeter":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reading(self, inferences: int = 1) -> EnergyReading:
        n = max(1, int(inferences))
        if self.source == "rapl" and self._before is not None and self._after is not None:
            zones = zip(self._zones, self._before, self._after, strict=True)
            uj = sum(rapl_delta_uj(b, a, _max_uj(z)) for z, b, a in zones)
            j = uj / 1e6
            return EnergyReading(joules_per_inference=j / n, joules_total=j, inferences=n, source="rapl",
                                 note=f"RAPL package energy over {len(self._zones)} domain(s); whole "
                                      f"package, includes other processes' load")
        cpu_s = max(0.0, self._cpu1 - self._cpu0)
        wall = max(0.0, self._wall1 - self._wall0)
        if cpu_s == 0.0:  # clock too coarse for a short span: assume one busy core
            cpu_s = wall
        j = cpu_s * self.watts_per_core
        return EnergyReading(joules_per_inference=j / n, joules_total=j, inferences=n, source="estimate",
                             note=f"estimate: process CPU time {cpu_s:.3f} s x {self.watts_per_core:g} W "
                                  f"per busy core (assumed, not measured); {self._why}")


def energy_per_inference(model: str | Path, feeds: Mapping[str, Any], target: str = "cpu",
                         n: int = 10) -> EnergyReading:
    """Energy per inference of an ONNX model over ``n`` runs: RAPL where readable, otherwise
    a labelled estimate (``feeds`` fitted to the model's fixed input dims)."""
    from sdk.bench.compare import fit_feeds
    from sdk.runtime import Engine, EngineOptions

    with Engine(model, EngineOptions(providers=[target], warmup=1)) as eng:
        x = fit_feeds(eng.inputs, feeds)
        with EnergyMeter() as meter:
            for _ in range(n):
                eng.run_list(x)
    return meter.reading(n)
