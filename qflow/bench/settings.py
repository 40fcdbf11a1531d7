"""The benchmarks' settings: `qflow bench throughput` and `qflow bench compute` flags are these fields."""

from __future__ import annotations

import dataclasses

from qflow.settings import flag

OVERRIDES = dataclasses.field(default=(), metadata=flag("--set", repeat=True, help="agent config override KEY=VALUE"))


@dataclasses.dataclass(frozen=True)
class ThroughputSettings:
    """Updates/s, FLOPs and GFLOP/s of agents' updates."""

    # flags refuse values below these (every other integer: below 0)
    AT_LEAST = {"obs_dim": 1, "action_dim": 1, "updates": 1, "members": 1, "grid_seeds": 1}

    agent: tuple[str, ...] = ("qflow",)  # agents measured one after the other, e.g. qflow,fql
    preset: str = "paper"  # network sizes: tiny, cpu or paper
    overrides: tuple[str, ...] = OVERRIDES
    obs_dim: int = 28  # observation size of the synthetic batch
    action_dim: int = 5  # action size of the synthetic batch
    updates: int = 30  # timed updates per loop
    members: tuple[int, ...] = ()  # also time N agents stacked in one jitted call, for each N listed (e.g. 1,15,40)
    grid: str | None = None  # KEY=[V1,V2,...] as in sweeps (brackets optional): also time that grid x grid_seeds
    # agents as one call (the values as traced settings) against one call per value, compile seconds included
    # (e.g. guidance_lambda=[2.5,5,10])
    grid_seeds: int = 4  # seeds per value of --grid
    precisions: tuple[str, ...] = ()  # matmul arithmetic measured one after the other (float32, tf32, bf16,
    # default); the reference matmul uses the same (default: the config's, float32)
    out: str | None = None  # also write the numbers as JSON here

    def grid_values(self) -> tuple[str, list[str]] | None:
        """(key, values) of --grid, refused unless it names a key and two or more values."""
        if self.grid is None:
            return None
        from qflow.settings import split_grid

        key, _, raw = self.grid.partition("=")
        key, values = split_grid(self.grid) or (key.strip(), [v.strip() for v in raw.split(",") if v.strip()])
        if not key or len(values) < 2 or any(c in v for v in values for c in "[]"):
            raise ValueError(f"--grid takes KEY=[V1,V2,...] with two or more values, got {self.grid!r}")
        return key, values


@dataclasses.dataclass(frozen=True)
class ComputeSettings:
    """Milliseconds per update (best of `repeats` calls of `updates` fused updates) and memory (XLA scratch
    of the compiled update, process peak RSS) for every agent and K; writes compute.md/.csv/.png/.json.
    About 5 minutes on a 2-core CPU with the defaults (K = 50 with BPTT is the slow part)."""

    # flags refuse values below these (every other integer: below 0)
    AT_LEAST = {"ks": 1, "obs_dim": 1, "action_dim": 1, "batch_size": 1, "updates": 1, "repeats": 1}

    agents: tuple[str, ...] = ("qflow", "fql", "fbrac")  # agents compared
    ks: tuple[int, ...] = (1, 5, 10, 20, 50)  # flow-step counts K
    preset: str = "paper"  # network sizes: tiny, cpu or paper
    overrides: tuple[str, ...] = OVERRIDES
    obs_dim: int = 28  # observation size of the synthetic batch
    action_dim: int = 5  # action size of the synthetic batch
    batch_size: int = 256  # transitions per update
    updates: int = 5  # fused updates per timed call
    repeats: int = 3  # timed calls; the best is kept
    isolate: bool = True  # each configuration in its own process (else peak RSS is the running maximum)
    out: str = "results/bench/compute"  # output directory
    progress: bool = True  # a progress bar
