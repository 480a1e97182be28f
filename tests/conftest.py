import pytest
import torch


@pytest.fixture(autouse=True)
def _few_threads():
    """Tests run on 2-core CI machines; keep each test on one thread and deterministic."""
    torch.set_num_threads(1)
    yield
