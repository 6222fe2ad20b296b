"""Rerun issue 14's hostile cases (medical triage, audit, signed bundles, output paths) from
the CLI against a source tree and count tracebacks, wrong exit codes, data lost and
tampering undetected.

    PYTHONPATH=$PWD python -m tests.robustness.tally_cases            # this tree
    PYTHONPATH=$PWD python -m tests.robustness.tally_cases --repo DIR  # another tree (e.g. the
                                                                       # base commit, `git archive`d)

Fixtures (images, signed bundles, keys) are always made with *this* tree's code; the
commands run with ``--repo``'s. Each command runs in a subprocess with a timeout (a hang
counts as a wrong exit code) and an address-space limit (a runaway read dies there, not on
the machine). A tree whose CLI has no ``--trusted-key`` gets the command without it: its
exit 0 on a tampered bundle is then a tampering undetected. Not a pytest module.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]
BUNDLE = HERE / "apps" / "medical_imaging" / "bundles" / "pneumonia-triage"
MEM_LIMIT = 6 << 30


@dataclass
class Result:
    name: str
    expected: int
    rc: int | None
    traceback: bool
    lost: bool = False
    tamper: bool = False          # a tampering case
    note: str = ""
    flags: list[str] = field(default_factory=list)


class Runner:
    def __init__(self, repo: Path, work: Path):
        self.repo, self.work = repo, work
        self.env = {**os.environ, "PYTHONPATH": str(repo), "EDGEWISE_HOME": str(work / "home")}
        self.env.pop("EDGEWISE_TRUSTED_KEYS", None)
        self.has_trust = "--trusted-key" in self.cli(["medical", "triage", "--help"], timeout=120)[1]

    def popen(self, args: list[str], **kw) -> subprocess.Popen:
        def limit():
            resource.setrlimit(resource.RLIMIT_AS, (MEM_LIMIT, MEM_LIMIT))
        return subprocess.Popen([sys.executable, "-m", "sdk.cli.main", *args], cwd=self.work, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=limit,
                                start_new_session=True, **kw)

    def cli(self, args: list[str], timeout: float = 180) -> tuple[int | None, str, str]:
        p = self.popen(args)
        try:
            out, err = p.communicate(timeout=timeout)
            return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            return None, out.decode(errors="replace"), err.decode(errors="replace") + "\n[timed out]"

    def trusted(self, args: list[str], key: Path) -> list[str]:
        return [*args, "--trusted-key", str(key)] if self.has_trust else args


# --- fixtures (this tree's code) ---------------------------------------------------------------
def pngs(folder: Path, n: int, seed: int) -> list[Path]:
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        yy, xx = np.mgrid[0:64, 0:64] / 64
        img = 0.6 + 0.2 * np.cos((xx - 0.5) * 3) - 0.3 * np.exp(-((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.02)
        img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
        p = folder / f"s{seed}_{i:03d}.png"
        cv2.imwrite(str(p), (img * 255).astype("uint8"))
        out.append(p)
    return out


def studies(out: Path) -> int:
    try:
        return len(json.loads((out / "worklist.json").read_text())["studies"])
    except (OSError, ValueError, KeyError):
        return -1


def audit_lines(out: Path) -> int:
    try:
        return len((out / "audit.jsonl").read_bytes().splitlines())
    except OSError:
        return 0


def signed_bundle(work: Path, name: str, key: Path) -> Path:
    from sdk.bundle.signing import sign_bundle

    b = work / name
    shutil.copytree(BUNDLE, b)
    sign_bundle(b, key)
    return b


# --- the cases ------------------------------------------------------------------------------------
def run_cases(r: Runner) -> list[Result]:
    from sdk.bundle.signing import generate_keypair

    w = r.work
    res: list[Result] = []
    tb = lambda err: "Traceback (most recent call last)" in err  # noqa: E731

    def add(name, expected, rc, err, lost=False, tamper=False, note=""):
        res.append(Result(name, expected, rc, tb(err), lost, tamper, note))

    common = ["--no-heatmaps", "--bundle", str(BUNDLE)]
    # 1. a second run into the same --out
    pngs(w / "a", 20, 1), pngs(w / "b", 10, 2)
    out = w / "o_seq"
    rc1, _, e1 = r.cli(["medical", "triage", str(w / "a"), "--out", str(out), *common])
    rc2, _, e2 = r.cli(["medical", "triage", str(w / "b"), "--out", str(out), *common])
    add("second run into the same --out", 0, rc2 if rc1 == 0 else rc1, e1 + e2, lost=studies(out) < 30,
        note=f"{studies(out)} of 30 studies in worklist.json")
    # 2. two runs at once
    out = w / "o_conc"
    pngs(w / "c1", 30, 3), pngs(w / "c2", 30, 4)
    procs = [r.popen(["medical", "triage", str(w / d), "--out", str(out), *common]) for d in ("c1", "c2")]
    errs, rcs = "", []
    for p in procs:
        _, e = p.communicate(timeout=600)
        errs += e.decode(errors="replace")
        rcs.append(p.returncode)
    add("two runs at once into one --out", 0, max(rcs, key=abs), errs, lost=studies(out) < 60,
        note=f"{studies(out)} of 60 studies")
    rc, _, e = r.cli(["medical", "verify-audit", str(out / "audit.jsonl")])
    add("verify-audit after the concurrent runs", 0, rc, e, note=e.strip()[:80])
    # 3. SIGINT during a run
    out = w / "o_int"
    pngs(w / "big", 80, 5)
    p = r.popen(["medical", "triage", str(w / "big"), "--out", str(out), "--bundle", str(BUNDLE)])
    t0 = time.time()
    while audit_lines(out) < 5 and p.poll() is None and time.time() - t0 < 300:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGINT)
    _, e = p.communicate(timeout=120)
    n_audit = audit_lines(out)
    add("SIGINT during triage", 130, p.returncode, e.decode(errors="replace"),
        lost=studies(out) < n_audit, note=f"{studies(out)} studies in worklist.json, {n_audit} audited")
    # 4-6. special files
    for kind in ("dev-zero symlink", "FIFO"):
        d = w / f"sp_{kind[:3]}"
        pngs(d, 2, 6)
        if kind == "FIFO":
            os.mkfifo(d / "pipe.png")
        else:
            os.symlink("/dev/zero", d / "zero.png")
        out = w / f"o_{kind[:3]}"
        rc, _, e = r.cli(["medical", "triage", str(d), "--out", str(out), *common], timeout=90)
        add(f"{kind} in the input folder", 0, rc, e, lost=studies(out) < 3, note=f"{studies(out)} of 3 studies")
    d = w / "sp_watch"
    pngs(d, 2, 7)
    os.mkfifo(d / "pipe.dcm")
    os.symlink("/dev/zero", d / "zero.dcm")
    out = w / "o_watch"
    rc, _, e = r.cli(["medical", "triage", str(d), "--out", str(out), "--watch", "--max-polls", "3",
                      "--interval", "0.2", *common], timeout=90)
    add("--watch with a FIFO and a /dev/zero symlink", 0, rc, e, lost=studies(out) < 4,
        note=f"{studies(out)} of 4 studies")
    # 7. output paths
    (w / "afile").write_text("x")
    rc, _, e = r.cli(["medical", "triage", str(w / "a"), "--out", str(w / "afile"), *common])
    add("triage --out is an existing file", 2, rc, e)
    rc, _, e = r.cli(["medical", "triage", str(w / "a"), "--out", "/proc/edgewise-out", *common])
    add("triage --out where no folder can be made", 2, rc, e)
    rc, _, e = r.cli(["pull", "yolox-nano", "--cache-dir", str(w / "afile")], timeout=60)
    add("pull --cache-dir is an existing file", 2, rc, e)
    # 8-10. audit log tampering (on the sequential run's log)
    src = w / "o_seq" / "audit.jsonl"
    for name, edit in [("last 2 audit lines deleted", "cut"), ("audit chain rewritten and re-hashed", "rehash"),
                       ("garbage bytes appended to the audit", "garbage")]:
        d = w / f"aud_{edit}"
        shutil.copytree(w / "o_seq", d)
        log = d / "audit.jsonl"
        lines = log.read_bytes().splitlines(keepends=True)
        if edit == "cut":
            log.write_bytes(b"".join(lines[:-2]))
        elif edit == "garbage":
            log.write_bytes(b"".join(lines) + b"\xff\x00garbage\n")
        else:
            import hashlib
            prev = "0" * 64
            out_lines = []
            for ln in lines:
                rec = json.loads(ln)
                rec.pop("mac", None)
                rec["status"] = "ok" if rec.get("status") == "not_analysed" else rec.get("status")
                rec["prev_hash"] = prev
                body = {k: v for k, v in rec.items() if k not in ("hash", "mac")}
                rec["hash"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                                        ensure_ascii=False).encode()).hexdigest()
                prev = rec["hash"]
                out_lines.append(json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n")
            log.write_text("".join(out_lines))
        rc, o, e = r.cli(["medical", "verify-audit", str(log)])
        add(f"verify-audit: {name}", 1, rc, e, tamper=True, note=(o + e).strip()[:90])
    assert src.is_file()
    # 11-16. bundles under a trust policy
    keys = w / "keys"
    keys.mkdir()
    generate_keypair(keys / "k.pem", keys / "k.pub")
    generate_keypair(keys / "other.pem", keys / "other.pub")
    pub = keys / "k.pub"

    def raise_threshold(bd: Path) -> None:
        m = json.loads((bd / "manifest.json").read_text())
        pol = m["extra"]["policy"]
        pol["threshold"] = pol["abstain_high"] = pol["urgent"] = 0.999
        (bd / "manifest.json").write_text(json.dumps(m, indent=1))

    def rewrite_model(bd: Path) -> None:
        import hashlib
        data = bytearray((bd / "model.onnx").read_bytes())
        data[-8:] = b"\x00" * 8
        (bd / "model.onnx").write_bytes(bytes(data))
        m = json.loads((bd / "manifest.json").read_text())
        m["files"]["model.onnx"] = hashlib.sha256(bytes(data)).hexdigest()
        (bd / "manifest.json").write_text(json.dumps(m, indent=1))

    bundles = {
        "manifest.json policy threshold raised": (signed_bundle(w, "b_thr", keys / "k.pem"), raise_threshold),
        "model rewritten together with its hash": (signed_bundle(w, "b_model", keys / "k.pem"), rewrite_model),
        "unsigned bundle": (w / "b_unsigned", None),
        "bundle signed by an untrusted key": (signed_bundle(w, "b_other", keys / "other.pem"), None),
    }
    shutil.copytree(BUNDLE, w / "b_unsigned")
    for name, (bd, tamper) in bundles.items():
        if tamper:
            tamper(bd)
        out = w / f"o_{bd.name}"
        rc, _, e = r.cli(r.trusted(["medical", "triage", str(w / "b"), "--out", str(out), "--no-heatmaps",
                                    "--bundle", str(bd)], pub))
        add(f"triage with {name}", 3, rc, e, tamper=True)
    rc, _, e = r.cli(r.trusted(["inspect", str(w / "b_thr")], pub))
    add("inspect with manifest.json policy threshold raised", 3, rc, e, tamper=True)
    rc, _, e = r.cli(["bundle", "verify", str(w / "b_model"), "--trusted-key", str(pub)])
    add("bundle verify on a rewritten model", 3, rc, e, tamper=True, note=e.strip()[:90])
    if r.has_trust:
        rc, _, e = r.cli(["medical", "triage", str(w / "b"), "--out", str(w / "o_k"), "--bundle", str(BUNDLE),
                          "--trusted-key", str(keys / "missing.pub")])
        add("--trusted-key names a missing file", 2, rc, e)
    rc, _, e = r.cli(["medical", "verify-audit", str(w / "sp_FIF" / "pipe.png")], timeout=30)
    add("verify-audit on a FIFO", 2, rc, e)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", default=str(HERE), help="source tree whose CLI is run (default: this one)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ew-tally-"))
    try:
        r = Runner(Path(args.repo).resolve(), work)
        results = run_cases(r)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    totals = {"cases": len(results), "tracebacks": sum(x.traceback for x in results),
              "wrong_exit_codes": sum(x.rc != x.expected for x in results),
              "data_lost": sum(x.lost for x in results),
              "tampering_undetected": sum(x.tamper and x.rc == 0 for x in results)}
    if args.json:
        print(json.dumps({"totals": totals, "cases": [x.__dict__ for x in results]}, indent=1))
        return 0
    for x in results:
        flags = [f for f, on in (("TRACEBACK", x.traceback), ("LOST", x.lost), ("UNDETECTED", x.tamper and x.rc == 0),
                                 ("EXIT", x.rc != x.expected)) if on]
        print(f"{x.name:55s} exit {str(x.rc):>4s} (want {x.expected:3d}) {' '.join(flags) or 'ok':20s} {x.note}")
    print(json.dumps(totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
