"""Training: the generic loop, checkpoints and CSV logs."""
