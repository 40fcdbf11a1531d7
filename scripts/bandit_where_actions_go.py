"""Where Q-Flow's actions go on the two-mode bandit (qflow.experiments.bandit) with strong guidance.

Two seeds, lambda = 0.3, 64x64 nets, batch 128; every 1,000 updates: the true reward, quantiles of
a_x (data modes at -0.6 and +0.6, best at +0.6), and the target critic's own Q(pi). Output:
results/bandit/where_actions_go.txt.    PYTHONPATH=. python scripts/bandit_where_actions_go.py
"""

import jax
import jax.numpy as jnp
import numpy as np

from qflow.agents.qflow import QFlowAgent
from qflow.experiments.bandit import bandit_config, bandit_data, reward
from qflow.training.loop import stack
from qflow.training.steps import make_train_chunk

cfg = bandit_config("qflow", {"guidance_lambda": 0.3})
agents = stack([QFlowAgent.create(s, 1, 2, cfg) for s in (0, 1)])
data, chunk = bandit_data(), make_train_chunk(1000)
print(f"jax {jax.__version__}; time features {cfg.time_features}; lambda {cfg.guidance_lambda}")
for k in range(3):
    agents, _ = chunk(agents, data)
    for i in range(2):
        agent = jax.tree.map(lambda x: x[i], agents)
        acts = np.asarray(agent.sample_actions(jnp.zeros((2000, 1)), jax.random.PRNGKey(100 + i)))
        q_pi = np.asarray(agent.nets["critic"].apply(agent.target_critic, jnp.zeros((2000, 1)), jnp.asarray(acts)))
        print(f"updates {(k + 1) * 1000} seed {i}: reward {reward(acts).mean():.3f}; a_x quantiles 5/25/50/75/95 % "
              f"{np.round(np.quantile(acts[:, 0], [.05, .25, .5, .75, .95]), 2).tolist()}; "
              f"critic's Q(s, pi) {q_pi.mean(0).mean():.3f}")
