"""A tiny image U-Net run (seconds on one CPU thread), shared by the training and CLI tests."""

TINY_UNET = [
    "schedule.sigma_max=3.0",
    "model.channels=8",
    "model.groups=4",
    "model.num_res_blocks=1",
    "model.embedding_dim=8",
    "train.preview_every=0",
]


def as_cli(overrides: list[str]) -> list[str]:
    """["a=1", "b=2"] → ["--set", "a=1", "--set", "b=2"]."""
    return [arg for item in overrides for arg in ("--set", item)]
