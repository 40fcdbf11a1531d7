"""`qflow toy2d`: the paper's 2-D bandit illustration of the BC-versus-value dilemma.

Setting (the paper's 2-D illustration): a one-step bandit whose actions are 2-D points.
The data are 10k points of a 2-D shape in [-4, 4]^2 with a reward r(a) per point; every method first
clones the data (BC epochs), then trains with its own value term (RL epochs) at four
behaviour-regularisation strengths. We reuse the project's agents unchanged: a constant dummy
observation (obs_dim 1, zeros), masks = 0 and reward = r(a), so the TD target is r itself and the
critic is a plain regression Q(a) -> r (no bootstrapping).

Choices of ours, all recorded in the output JSON (the datasets, rewards and in-support metric are
described in ``data.py``, the training phases in ``train.py``):
- Action units. The agents clip actions to [-1, 1], so training uses a / 4 and plots and rewards use
  4 * action. The flow-matching, distillation and -Q / grad-V trade-offs then sit in agent units,
  where squared action distances are 16x smaller and action gradients 4x larger than in [-4, 4] units.
  Each method's knob is therefore set to strength * 16 (``knob_scale``), which reproduces the
  strength's trade-off in the paper's units exactly for all three methods (FBRAC / FQL: alpha * BC - Q;
  Q-Flow: (a - x0) + grad V / lambda). One side effect remains: the base noise N(0, I) in agent units
  is N(0, 16 I) in plot units.
- Strength -> knob: Q-Flow guidance_lambda, FQL alpha, FBRAC alpha (larger = closer to the data in
  all three).

Modules: ``settings`` (names, ``ToySettings``, the paper's values, the caption), ``data``, ``train``
(the knob wrapper, the phases as jobs of ``qflow.training.loop``, sampling), ``run`` (the driver
``run_toy2d``) and ``tables``; the figures are drawn by ``qflow.reporting.toy2d_plots``. Nothing here
imports jax at import time, so the command-line parser, which reads the settings, stays fast to build.
"""

from qflow.experiments.toy2d.data import bandit_batch, generate, reward, support_fraction
from qflow.experiments.toy2d.run import run_toy2d
from qflow.experiments.toy2d.settings import (DATASETS, KNOBS, LABELS, METHODS, PAPER, SCALE, ToySettings,
                                              caption_for)
from qflow.experiments.toy2d.train import method_config

__all__ = ["DATASETS", "KNOBS", "LABELS", "METHODS", "PAPER", "SCALE", "ToySettings", "bandit_batch",
           "caption_for", "generate", "method_config", "reward", "run_toy2d",
           "support_fraction"]
