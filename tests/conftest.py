import pytest
import torch

# One thread from the start, so that module- and session-scoped fixtures (set up before the
# function-scoped one below) train on one thread too: on some CPUs (an Intel Xeon with AMX)
# training's bytes depend on the thread count.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _few_threads():
    """Tests run on 2-core CI machines; keep each test on one thread and deterministic."""
    torch.set_num_threads(1)
    yield
