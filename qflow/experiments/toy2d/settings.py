"""The study's names and settings. Imports only the standard library, because the command-line parser
reads the defaults below and should stay fast to build."""

from __future__ import annotations

import dataclasses
import math

SCALE = 4.0  # plot / reward units = SCALE * agent units
DATASETS = ("swiss_roll", "two_spirals", "moons", "eight_gaussians")
METHODS = ("flow_bc", "fbrac", "fql", "qflow")
KNOBS = {"qflow": "guidance_lambda", "fql": "alpha", "fbrac": "alpha"}  # strength -> this config key
LABELS = {"flow_bc": "flow BC", "fbrac": "FBRAC (BPTT)", "fql": "FQL (one-step)", "qflow": "Q-Flow"}


@dataclasses.dataclass(frozen=True)
class ToySettings:

    # flags refuse values below these (every other integer: below 0)
    AT_LEAST = {"n_data": 1, "batch_size": 1, "flow_steps": 1, "eval_samples": 1, "chunk": 1}
    datasets: tuple = DATASETS  # which 2-D datasets to run
    methods: tuple = METHODS  # which methods (flow_bc, fbrac, fql, qflow)
    strengths: tuple = (0.3, 0.5, 1.0, 5.0)  # behaviour-regularisation strengths (paper's grid)
    seeds: tuple = (0, 1)  # agent seeds, trained side by side with vmap
    n_data: int = 10_000  # points per dataset (paper: 10k)
    pretrain_epochs: float = 200.0  # epochs of shared flow-BC pretraining of the velocity field (paper: none)
    bc_epochs: float = 50.0  # epochs of each method's own losses with the value term off (paper: 2000)
    rl_epochs: float = 10.0  # epochs with the value term on (paper: 100)
    batch_size: int = 256  # transitions per update (paper: 4096)
    flow_steps: int = 10  # K Euler steps (paper: 25)
    hidden_dims: tuple = (64, 64, 64)  # widths of every network (paper: 4x512)
    lr: float = 3e-4  # Adam learning rate
    knob_scale: float = SCALE**2  # knob = strength * knob_scale (see the toy2d package docstring)
    bc_knob: float = 1e6  # knob value during the BC phase (value term off in effect)
    eval_samples: int = 2000  # action samples per agent for the metrics
    support_radius: float = 0.1  # "inside the data support": nearest data point closer than this ([-4, 4] units)
    chunk: int = 200  # updates per jitted call (rounded so both phases use whole chunks)
    curve_points: int = 0  # measure reward / support this many times during the RL phase (0: at the end only)
    data_seed: int = 0  # seed of the data generators
    evolution_strength: float = 1.0  # strength shown in the flow-evolution figure
    target_update: str = "pre"  # the target critic averages toward the critic before ("pre") or after ("post",
    # the order of results made before 2026-12-01) each update
    paper: bool = False  # True when these are the paper's settings (recorded in the outputs)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.n_data / self.batch_size))

    def phase_steps(self) -> tuple[int, int, int, int]:
        """(chunk length, pretraining, BC and RL steps); every phase rounded up to whole chunks."""
        rl = max(1, round(self.rl_epochs * self.steps_per_epoch))
        length = min(self.chunk, rl)
        if self.curve_points > 1:  # every curve point falls on a chunk boundary
            length = min(length, max(1, rl // self.curve_points))
        whole = lambda epochs: length * math.ceil(round(epochs * self.steps_per_epoch) / length)  # noqa: E731
        return length, whole(self.pretrain_epochs), whole(self.bc_epochs), whole(self.rl_epochs)

    def validate(self) -> None:
        unknown = sorted(set(self.datasets) - set(DATASETS))
        if unknown:
            raise ValueError(f"unknown toy2d dataset(s) {unknown}; choose from {', '.join(DATASETS)}")
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ValueError(f"unknown toy2d method(s) {unknown}; choose from {', '.join(METHODS)}")
        if not self.strengths or min(self.strengths) <= 0:
            raise ValueError(f"--strengths must be positive numbers, got {self.strengths}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"--seeds must be distinct integers, got {self.seeds}")
        if self.curve_points < 0:
            raise ValueError(f"--curve-points must be >= 0, got {self.curve_points}")
        for name in ("n_data", "batch_size", "flow_steps", "eval_samples", "chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.pretrain_epochs < 0 or self.bc_epochs < 0 or self.rl_epochs <= 0:
            raise ValueError(f"need --pretrain-epochs >= 0, --bc-epochs >= 0 and --rl-epochs > 0, got "
                             f"{self.pretrain_epochs}, {self.bc_epochs}, {self.rl_epochs}")
        if self.support_radius <= 0:
            raise ValueError(f"--support-radius must be > 0, got {self.support_radius}")


# The paper's settings; the defaults above are reduced so the study fits a CPU.
PAPER = dict(n_data=10_000, pretrain_epochs=0.0, bc_epochs=2000.0, rl_epochs=100.0, batch_size=4096,
             flow_steps=25, hidden_dims=(512, 512, 512, 512), paper=True)


def caption_for(settings: ToySettings) -> str:
    """One paragraph saying what was run, under every table and figure (so none is mistaken for the paper's)."""
    _, pre, bc, rl = settings.phase_steps()
    kind = "paper settings" if settings.paper else "REDUCED CPU settings (not the paper's; --paper restores them)"
    phases = f"{pre} shared flow-BC + " if pre else ""
    epochs = f"{settings.pretrain_epochs:g} + " if pre else ""
    nets, seeds = "x".join(map(str, settings.hidden_dims)), ",".join(map(str, settings.seeds))
    return (f"{kind}: {settings.n_data} points, batch {settings.batch_size}, {phases}{bc} BC + {rl} RL updates "
            f"({epochs}{settings.bc_epochs:g} + {settings.rl_epochs:g} epochs), K = {settings.flow_steps}, "
            f"nets {nets}, "
            f"seeds {seeds}; knob = strength x {settings.knob_scale:g} in agent units (actions / 4); 'in' = samples "
            f"within {settings.support_radius:g} of a data point.")
