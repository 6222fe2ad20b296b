"""Robustness suite: bad-input corpora built in fixtures, property-based fuzzing of every
parser that reads user bytes. Hypothesis runs derandomized (the same examples on every
machine, no database written); `HYPOTHESIS_PROFILE=deep` tries ten times more, at random."""
from __future__ import annotations

import os

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the `dev` extra brings it; test_fuzz_parsers skips with a reason without it
    settings = None

if settings is not None:
    _quiet = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
    settings.register_profile("edgewise", max_examples=120, deadline=None, database=None, derandomize=True,
                              suppress_health_check=_quiet)
    settings.register_profile("deep", max_examples=1200, deadline=None, database=None, suppress_health_check=_quiet)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "edgewise"))
