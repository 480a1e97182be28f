"""Shared by the oracle sampler tests: the paper's 0.2/0.8 mixture, and the distance between two
independent sets of its exact samples (the noise floor) at the test module's ``N`` points and in
its ``DISTANCE``."""

import pytest
import torch

from ncsn.data.toy import GaussianMixture, make_toy
from ncsn.metrics import noise_floor


@pytest.fixture(scope="module")
def mixture() -> GaussianMixture:
    return make_toy("mixture")


@pytest.fixture(scope="module")
def floor(mixture, request) -> float:
    n, distance = request.module.N, request.module.DISTANCE
    return noise_floor(
        mixture.sample, n, distance, repeats=3, generator=torch.Generator().manual_seed(1)
    ).mean
