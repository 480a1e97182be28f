"""The training machinery: the loop, state <-> checkpoint, optimizer and EMA, the non-finite
guard, the metrics log, the run lock and torchrun support."""
