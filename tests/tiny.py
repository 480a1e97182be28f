"""Tiny runs (seconds on one CPU thread) shared by the tests: an image U-Net and a toy MLP."""

TINY_UNET = [
    "schedule.sigma_max=3.0",
    "model.channels=8",
    "model.groups=4",
    "model.num_res_blocks=1",
    "model.embedding_dim=8",
    "train.preview_every=0",
]


# A tiny MLP on 256 toy points (the crash-safety and non-finite-guard tests).
TINY_TOY = [
    "data.name=toy",
    "data.toy_n=256",
    "model.net=mlp",
    "model.hidden=16",
    "model.layers=1",
    "model.embedding_dim=8",
    "schedule.sigma_max=10.0",
    "schedule.num_levels=4",
    "train.batch_size=16",
    "train.preview_every=0",
]


def as_cli(overrides: list[str]) -> list[str]:
    """["a=1", "b=2"] → ["--set", "a=1", "--set", "b=2"]."""
    return [arg for item in overrides for arg in ("--set", item)]
