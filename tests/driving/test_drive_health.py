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
    for _ in range(40):          # a watchdog checking every frame period, no frames coming
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


def noisy(image, seed, sigma=3.0):
    """The same picture with sensor / codec-like noise: never byte-identical."""
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def scene(shift):
    """A textured 'road' picture moved by ``shift`` pixels (the vehicle moving)."""
    base = np.random.default_rng(1).integers(0, 255, (72, 256, 3)).astype(np.uint8)
    base = np.kron(base, np.ones((5, 5, 1), np.uint8))            # 360x1280, 5 px texture
    return np.ascontiguousarray(np.roll(base, shift, axis=1)[:, :640])


def test_frozen_scene_with_codec_noise_fails(mon, fake_clock):
    feed(mon, fake_clock, 30, (scene(7 * i) for i in itertools.count()))
    still = scene(0)
    states = feed(mon, fake_clock, 30, (noisy(still, i) for i in itertools.count()))
    n = first(states, HealthState.FAILED)
    assert n is not None and n <= mon.options.frozen_frames
    assert any("scene frozen" in r for r in mon.reasons)


def test_moving_noisy_scene_is_not_frozen(mon, fake_clock):
    states = feed(mon, fake_clock, 60, (noisy(scene(3 * i), i) for i in itertools.count()))
    assert set(states) == {HealthState.OK} and mon.moving()


def _lanes_feed(mon, clock, n, images, found):
    states = []
    for _ in range(n):
        t = clock.advance(DT)
        mon.frame_arrived(next(images))
        mon.model_result(0.02)
        mon.lanes_seen(found, t)
        states.append(mon.check())
    return states


def test_lanes_lost_while_moving_degrades_but_keeps_perception(mon, fake_clock):
    moving = (scene(4 * i) for i in itertools.count())
    _lanes_feed(mon, fake_clock, 25, moving, True)
    states = _lanes_feed(mon, fake_clock, 100, moving, False)     # 4 s without lanes
    n = first(states, HealthState.DEGRADED)
    assert n is not None and abs((n + 1) * DT - mon.options.lanes_lost_s) <= 2 * DT
    assert "lanes lost" in mon.reasons[0] and mon.available      # detection and FCW still go on
    states = _lanes_feed(mon, fake_clock, 20, moving, True)
    assert states[-1] == HealthState.OK


def standing(i):
    """Stopped at a light: the road (lower half) still, a car crossing far ahead (upper half)."""
    img = noisy(scene(0), i)
    x = (12 * i) % 560
    img[40:100, x:x + 80] = 30
    return img


def test_lanes_lost_while_standing_still_stays_ok(mon, fake_clock):
    states = _lanes_feed(mon, fake_clock, 100, (standing(i) for i in itertools.count()), False)
    assert set(states) == {HealthState.OK} and not mon.moving()   # 4 s without lanes, not moving


@pytest.mark.parametrize("state,reason", [(HealthState.FAILED, "camera unavailable: could not open camera 7"),
                                          (HealthState.DEGRADED, "source ended at frame 73 of 221 declared")])
def test_source_problems_are_immediate_and_sticky(mon, fake_clock, state, reason):
    feed(mon, fake_clock, 10, frames())
    mon.source_problem(state, reason)
    assert mon.check() == state and mon.reasons[0] == reason and not mon.available
    feed(mon, fake_clock, 20, frames())
    assert mon.state == state
