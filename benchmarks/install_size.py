"""Installed size of `pip install edgewise` and of each extra, each in a fresh venv.

    python benchmarks/install_size.py [--extras compress report train ...] [--json]

Builds the wheel of this checkout once, then for the runtime (no extras) and for each extra
creates a venv, installs the wheel with that extra, and sums the bytes under site-packages
(minus what an empty venv already holds: pip). The runtime venv is also checked: none of
matplotlib, sympy, torch, pillow, pyyaml may be installed there, and the runtime layers must
import. Needs the package index pip is configured with; writes only under a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXTRAS = ["compress", "report", "train", "dicom", "speech", "cluster", "signing"]
NOT_IN_RUNTIME = {"matplotlib", "sympy", "torch", "pillow", "pyyaml"}


def _site_bytes(env: Path) -> int:
    site = next(env.glob("lib/python*/site-packages"))
    return sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not p.is_symlink())


def _make_env(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(path)
    return path / "bin" / "python"


def _pip(py: Path, *args: str) -> str:
    return subprocess.run([str(py), "-m", "pip", *args], check=True, capture_output=True, text=True).stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extras", nargs="*", default=EXTRAS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="edgewise-size-") as tmp:
        root = Path(tmp)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "wheel"),
                        str(REPO)], check=True)
        wheel = next((root / "wheel").glob("edgewise-*.whl"))
        _make_env(root / "empty")
        empty = _site_bytes(root / "empty")
        for extra in ["", *args.extras]:
            env = root / (extra or "runtime")
            py = _make_env(env)
            _pip(py, "install", "-q", f"{wheel}[{extra}]" if extra else str(wheel))
            names = {line.split("==")[0].lower() for line in _pip(py, "freeze").splitlines() if "==" in line}
            row = {"bytes": _site_bytes(env) - empty, "packages": len(names)}
            if not extra:
                found = sorted(names & NOT_IN_RUNTIME)
                if found:
                    raise SystemExit(f"the runtime install pulled {found}; they belong in extras")
                subprocess.run([str(py), "-c", "import sdk.runtime, sdk.bundle, sdk.preprocess, sdk.pipeline"],
                               check=True, cwd=root)
                subprocess.run([str(env / "bin" / "edgewise"), "devices"], check=True, cwd=root,
                               stdout=subprocess.DEVNULL)
            else:
                row["extra_bytes"] = row["bytes"] - rows["runtime"]["bytes"]
            rows[extra or "runtime"] = row
            subprocess.run(["rm", "-rf", str(env)], check=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'install':<34} {'site-packages':>13} {'added':>9} {'packages':>9}")
    for name, r in rows.items():
        what = "pip install edgewise" if name == "runtime" else f"pip install 'edgewise[{name}]'"
        added = f"{r['extra_bytes'] / 2**20:8.0f}M" if "extra_bytes" in r else ""
        print(f"{what:<34} {r['bytes'] / 2**20:12.0f}M {added:>9} {r['packages']:>9}")
    print("(Linux x86-64, CPython %d.%d; pip's own files excluded)" % sys.version_info[:2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
