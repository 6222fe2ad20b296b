"""Health monitor fault injection on a fake clock: every state change within N frames."""
import itertools

import numpy as np
import pytest

from apps.driving_perception.health import HealthMonitor, HealthOptions, HealthState

DT = 0.04   # 25 FPS


def frames(seed=0):
    rng = np.random.default_rng(seed)
    while True:
        yield rng.integers(0, 255, (72, 128, 3), dtype=np.uint8)


def feed(mon, clock, n, img_iter, latency=0.02, valid=True, drop_every=0):
    """n frame periods; returns the states after each check."""
    states = []
    for i in range(n):
        clock.advance(DT)
        if drop_every and i % drop_every == 0:
            mon.frame_dropped()
        else:
            mon.frame_arrived(next(img_iter))
            mon.model_result(latency, valid)
        states.append(mon.check())
    return states


def first(states, state):
    return next((i for i, s in enumerate(states) if s == state), None)


@pytest.fixture
def mon(fake_clock):
    return HealthMonitor(HealthOptions(), clock=fake_clock)


def test_healthy_stream_stays_ok(mon, fake_clock):
    states = feed(mon, fake_clock, 150, frames())
    assert set(states) == {HealthState.OK} and mon.available and not mon.transitions


def test_no_frames_fails_within_one_check_after_timeout(mon, fake_clock):
    feed(mon, fake_clock, 30, frames())
    timeout = mon.options.frame_timeout_s
    ticks = []
    for k in range(40):          # a watchdog checking every frame period, no frames coming
        fake_clock.advance(DT)
        ticks.append(mon.check())
    n = first(ticks, HealthState.FAILED)
    assert n is not None and abs((n + 1) * DT - timeout) <= DT + 1e-9
    assert "no frame" in mon.reasons[0] and not mon.available


def test_frozen_camera_fails(mon, fake_clock):
    feed(mon, fake_clock, 30, frames())
    same = np.full((72, 128, 3), 90, np.uint8)
    states = feed(mon, fake_clock, 30, itertools.repeat(same))
    n = first(states, HealthState.FAILED)
    assert n is not None and n <= mon.options.frozen_frames
    assert any("frozen" in r for r in mon.reasons)


def test_half_the_frames_dropped_degrades(mon, fake_clock):
    feed(mon, fake_clock, 30, frames())
    states = feed(mon, fake_clock, 60, frames(), drop_every=2)
    n = first(states, HealthState.DEGRADED)
    assert n is not None and n <= 30
    assert any("dropped" in r for r in mon.reasons)
    assert HealthState.FAILED not in states


def test_slow_model_degrades(mon, fake_clock):
    feed(mon, fake_clock, 30, frames())
    states = feed(mon, fake_clock, 30, frames(), latency=0.3)
    n = first(states, HealthState.DEGRADED)
    # the median over 10 runs flips after 6 slow runs, then degrade_after=3 checks
    assert n is not None and n <= 10
    assert "model" in mon.reasons[0]


def test_low_fps_degrades(mon, fake_clock):
    img = frames()
    states = []
    for _ in range(40):
        fake_clock.advance(0.2)            # 5 FPS < 10
        mon.frame_arrived(next(img))
        mon.model_result(0.02)
        states.append(mon.check())
    n = first(states, HealthState.DEGRADED)
    assert n is not None and n <= 15 and "FPS" in mon.reasons[0]


def test_nan_output_fails_immediately_and_recovers_with_hysteresis(mon, fake_clock):
    img = frames()
    feed(mon, fake_clock, 30, img)
    states = feed(mon, fake_clock, 1, img, valid=False)
    assert states == [HealthState.FAILED] and "invalid model output" in mon.reasons[0]
    states = feed(mon, fake_clock, 30, img)
    k = mon.options.recover_after
    assert states[: k - 1] == [HealthState.FAILED] * (k - 1), "recovered without hysteresis"
    assert states[k - 1] == HealthState.OK
    assert [(t["from"], t["to"]) for t in mon.transitions] == [("OK", "FAILED"), ("FAILED", "OK")]


def test_flapping_condition_does_not_flap_the_state(mon, fake_clock):
    img = frames()
    feed(mon, fake_clock, 30, img)
    feed(mon, fake_clock, 1, img, valid=False)
    for _ in range(10):   # one good frame, one bad: never gets back to OK
        feed(mon, fake_clock, 1, img)
        feed(mon, fake_clock, 1, img, valid=False)
    assert mon.state == HealthState.FAILED and len(mon.transitions) == 1
