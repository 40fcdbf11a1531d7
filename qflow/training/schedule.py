"""When a training loop logs, evaluates, checkpoints or exports: the one schedule every loop shares."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Each event is due every ``every[name]`` steps and at the last step, ``total``."""

    total: int
    every: dict  # event name -> interval in steps, e.g. {"log": 1000, "eval": 5000, "checkpoint": 5000}

    def __post_init__(self):
        bad = {k: v for k, v in self.every.items() if not v or v < 1}
        if bad:
            raise ValueError(f"schedule intervals must be >= 1, got {bad}")

    def due(self, step: int) -> set[str]:
        return {name for name, n in self.every.items() if step % n == 0 or step == self.total}

    def chunk(self, longest: int) -> int:
        """The longest chunk of steps (at most ``longest``) after which every due event falls on a boundary."""
        return math.gcd(longest, *self.every.values(), *([self.total] if self.total else []))
