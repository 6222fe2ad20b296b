"""Decision policy, worklist ordering (simulated clock) and the audit chain."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest

from apps.medical_imaging.audit import AuditLog, verify
from apps.medical_imaging.metrics import ece, fit_temperature, roc_auc, sens_spec
from apps.medical_imaging.policy import Policy, fit_policy, operating_threshold
from apps.medical_imaging.worklist import SimulatedClock, Study, order


def test_roc_auc_known_values():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.2, 0.3])


def test_operating_point_reaches_sensitivity():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
    for target in (0.9, 0.95, 0.99):
        t = operating_threshold(y, p, target)
        sens, _ = sens_spec(y, p, t)
        assert sens >= target
        assert sens_spec(y, p, np.nextafter(t, 1))[0] < target or t == p[y == 1].min()


def test_temperature_scaling_lowers_ece():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 4000)
    true_margin = (y * 2 - 1) * 1.0 + rng.normal(0, 1.0, 4000)
    # two unit-variance Gaussians at -1 / +1: the true log-odds is 2x, so 4x is 2x over-confident
    over = true_margin * 4
    t = fit_temperature(over, y)
    assert 1.8 < t < 2.2
    sig = lambda z: 1 / (1 + np.exp(-z))
    assert ece(y, sig(over / t)) < ece(y, sig(over)) / 2


def test_fit_policy_and_decisions():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 600)
    m = (y * 2 - 1) * 2.0 + rng.normal(0, 1.2, 600)
    logits = np.stack([np.zeros_like(m), m], 1)
    pol, fig = fit_policy(logits, y, min_sensitivity=0.95)
    assert fig["val_sensitivity"] >= 0.95
    assert pol.abstain_low < pol.threshold < pol.abstain_high <= pol.urgent
    assert pol.decide(pol.urgent).priority == "urgent"
    mid = pol.decide((pol.threshold + pol.abstain_high) / 2)
    assert (mid.status, mid.priority) == ("abstain", "review")
    low = pol.decide(pol.abstain_low / 2)
    assert (low.status, low.priority) == ("ok", "routine")
    nan = pol.decide(float("nan"))
    assert nan.status == "not_analysed" and nan.priority != "routine"


def test_policy_rejects_disordered_thresholds():
    with pytest.raises(ValueError, match="abstain_low <= threshold"):
        Policy(temperature=1, threshold=0.5, abstain_low=0.6, abstain_high=0.7, urgent=0.9)


def _study(i, status, priority, p=None, t0=None):
    return Study(study_id=f"s{i}", arrival=t0, arrival_seq=i, status=status, priority=priority, probability=p)


def test_worklist_order_and_max_wait_cap():
    clock = SimulatedClock(datetime(2026, 1, 1, 8, 0, tzinfo=timezone.utc))
    studies = []
    # a routine study arrives first, then a stream of flagged and uncertain ones
    studies.append(_study(0, "ok", "routine", 0.05, clock.now()))
    clock.advance(5)
    studies.append(_study(1, "abstain", "review", 0.4, clock.now()))
    clock.advance(1)
    studies.append(_study(2, "ok", "review", 0.6, clock.now()))
    clock.advance(1)
    studies.append(_study(3, "not_analysed", "review", None, clock.now()))
    clock.advance(1)
    studies.append(_study(4, "ok", "urgent", 0.97, clock.now()))
    clock.advance(1)
    studies.append(_study(5, "ok", "urgent", 0.99, clock.now()))
    clock.advance(1)
    studies.append(_study(6, "abstain", "review", 0.45, clock.now()))
    ids = [s.study_id for s in order(studies, clock.now(), max_wait_minutes=30)]
    # urgent by probability, then scored review, then abstained/failed in arrival order, routine last
    assert ids == ["s5", "s4", "s2", "s1", "s3", "s6", "s0"]
    clock.advance(21)  # s0 has now waited 31 minutes > 30: promoted to the top
    ordered = order(studies, clock.now(), max_wait_minutes=30)
    assert [s.study_id for s in ordered][:1] == ["s0"] and ordered[0].promoted
    clock.advance(10)  # everyone older than 30 min now: arrival order
    assert [s.study_id for s in order(studies, clock.now(), 30)] == [f"s{i}" for i in range(7)]
    assert [s.study_id for s in order(studies, clock.now(), None)][0] == "s5"  # no cap: starvation possible


def _fields(i):
    return dict(time=f"2026-01-01T00:00:0{i}", model="m", model_version="1", sdk_version="0.1",
                model_sha256="a" * 64, input_sha256="b" * 64, study_id=f"s{i}",
                decision={"priority": "review", "probability": 0.5}, status="ok", reason="r")


def test_audit_chain_and_tamper_detection(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for i in range(3):
        log.append(**_fields(i))
    AuditLog(path).append(**_fields(3))            # a new session continues the chain
    res = verify(path)
    assert res.ok and res.lines == 4
    lines = path.read_text().splitlines()

    edited = [json.loads(x) for x in lines]
    edited[1]["status"] = "abstain"
    path.write_text("\n".join(json.dumps(r) for r in edited) + "\n")
    res = verify(path)
    assert not res.ok and res.bad_line == 2 and "edited" in res.message

    path.write_text("\n".join(lines[:1] + lines[2:]) + "\n")   # a line removed
    res = verify(path)
    assert not res.ok and res.bad_line == 2 and "prev_hash" in res.message
    with pytest.raises(ValueError, match="broken audit chain"):
        AuditLog(path)


def test_verify_audit_cli_exit_codes(tmp_path, capsys):
    from sdk.cli.main import main

    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for i in range(2):
        log.append(**_fields(i))
    assert main(["medical", "verify-audit", str(path)]) == 0
    path.write_text(path.read_text().replace('"status":"ok"', '"status":"xx"', 1))
    assert main(["medical", "verify-audit", str(path)]) == 1
    assert "line 1" in capsys.readouterr().err
