"""Test-suite configuration: Hypothesis profiles and default threads."""

import os

import torch
from hypothesis import HealthCheck, settings

# "dev" (default) keeps the suite fast on 2 cores; "thorough" runs more examples: 200 where a
# test sets no count, and 20x the count where it does (tests.cases.examples).
settings.register_profile(
    "dev",
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.register_profile(
    "thorough",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# One thread per test process: CI runs two xdist workers on two cores, and torch's own
# intra-op threads on top of that oversubscribe the machine (small models get ~40x slower).
torch.set_num_threads(1)
