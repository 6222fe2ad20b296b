"""How short the live end-pointer's silence can be before it cuts phrases apart.

The 22 LJ Speech recordings are split in two: the ones ``translation_live_pulse.py`` plays
(its ``pick()``: the first 8 under 7 s) are the **report** set; the other 14 are the
**tuning** set, on which the live default (``LiveConfig``'s ``min_silence_ms``) was chosen:
the shortest silence that cuts none of them into more utterances than 480 ms does. Each
recording, with 0.5 s of silence before and 1 s after, goes through silero VAD and the
end-pointer; a cut is one utterance more than one per recording.

    python benchmarks/translation_live_endpoint.py [--json]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
SILENCES_MS = (480, 448, 416, 384, 352, 320, 288, 256)


def cuts(probs: dict[str, list], silence_ms: int) -> dict[str, int]:
    from apps.mobile_translation.endpoint import EndpointConfig, Endpointer

    out = {}
    for rid, chunks in probs.items():
        ep = Endpointer(EndpointConfig(min_silence_ms=silence_ms))
        n = sum(len(ep.push(p, c)) for p, c in chunks) + len(ep.flush())
        out[rid] = n - 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from translation_live_pulse import LJ, pick

    from apps.mobile_translation.audio_io import read_audio_16k
    from apps.mobile_translation.live_config import LIVE_SILENCE_MS
    from apps.mobile_translation.vad import SileroVAD

    report = {rid for rid, _, _ in pick(8)}
    rows = [r for r in csv.reader((LJ / "transcripts.tsv").open(encoding="utf-8"), delimiter="\t")
            if r and r[0] != "id"]
    vad, probs = SileroVAD(), {}
    for rid, _ in rows:
        a, _ = read_audio_16k(LJ / f"{rid}.wav")
        a = np.concatenate([np.zeros(8000, np.float32), a, np.zeros(16000, np.float32)])
        vad.reset()
        probs[rid] = [(vad(a[i:i + 512]), a[i:i + 512]) for i in range(0, len(a) - 511, 512)]
    res = {"live_default_ms": LIVE_SILENCE_MS, "report_set": sorted(report),
           "tuning_set": sorted(set(probs) - report), "cuts": {}}
    for ms in SILENCES_MS:
        c = cuts(probs, ms)
        res["cuts"][ms] = {"tuning": sum(v for k, v in c.items() if k not in report),
                           "report": sum(v for k, v in c.items() if k in report)}
    base = res["cuts"][480]["tuning"]
    res["chosen_on_tuning_ms"] = min(ms for ms in SILENCES_MS if all(
        res["cuts"][m]["tuning"] <= base for m in SILENCES_MS if m >= ms))
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"tuning set: {len(res['tuning_set'])} recordings; report set (the live benchmark's): "
          f"{len(res['report_set'])}")
    for ms, c in res["cuts"].items():
        print(f"  {ms} ms of silence: {c['tuning']} cuts on the tuning set, {c['report']} on the report set")
    print(f"shortest with no more cuts than 480 ms on the tuning set: {res['chosen_on_tuning_ms']} ms "
          f"(live default: {LIVE_SILENCE_MS} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
