"""Run a policy for many episodes, stepping several environments in lockstep.

The policy is called once per time step on a fixed-size batch (one row per environment), so a
jitted policy compiles once and its cost is shared by all environments.
"""

from __future__ import annotations

import functools

import numpy as np


def act(agent, obs, rng):
    """The agent's ``sample_actions``, jitted once per agent type (compiled lazily on first use)."""
    return _jitted_act()(agent, obs, rng)


@functools.lru_cache(maxsize=None)
def _jitted_act():
    import jax

    return jax.jit(lambda agent, obs, rng: agent.sample_actions(obs, rng))


def evaluate_policy(evaluator, agent, seed: int, step: int, episodes: int, desc: str | None = None) -> dict:
    """The project's one evaluation convention: episode seeds from ``seed + step``, action noise from
    ``PRNGKey(seed * 7919 + step)``; the same policy, seed and step always give the same result.
    ``desc``: show a bar of finished episodes with this label."""
    import jax
    import jax.numpy as jnp

    keys = iter(jax.random.split(jax.random.PRNGKey(seed * 7919 + step), 100_000))
    return evaluator.run(lambda o: act(agent, jnp.asarray(o), next(keys)), episodes, seed=seed + step, desc=desc)


class Evaluator:
    def __init__(self, env_id: str, num_envs: int = 10):
        from qflow.data.loading import make_env

        self.env_id = env_id
        self.envs = [make_env(env_id) for _ in range(num_envs)]

    def run(self, policy, episodes: int, seed: int, desc: str | None = None) -> dict[str, float]:
        """policy(obs: float32 [num_envs, obs_dim]) -> actions [num_envs, act_dim] (numpy). With ``desc``,
        a bar counts finished episodes (an evaluation can take minutes: the training bar stands still)."""
        from tqdm import tqdm

        bar = tqdm(total=episodes, desc=desc, unit="ep", leave=False, disable=desc is None, dynamic_ncols=True)
        n = len(self.envs)
        obs = np.zeros((n, self.envs[0].observation_space.shape[0]), np.float32)
        active = [False] * n
        started = 0
        successes, returns, lengths = [], [], []
        ep_return, ep_len = np.zeros(n), np.zeros(n, int)

        def start(i):
            nonlocal started
            ob, _ = self.envs[i].reset(seed=seed * 100_003 + started)
            obs[i], active[i], ep_return[i], ep_len[i] = ob, True, 0.0, 0
            started += 1

        for i in range(min(n, episodes)):
            start(i)
        while any(active):
            actions = np.asarray(policy(obs))
            for i in range(n):
                if not active[i]:
                    continue
                ob, reward, terminated, truncated, info = self.envs[i].step(actions[i])
                obs[i] = ob
                ep_return[i] += reward
                ep_len[i] += 1
                if terminated or truncated:
                    successes.append(float(info.get("success", 0.0)))
                    returns.append(ep_return[i])
                    lengths.append(ep_len[i])
                    active[i] = False
                    bar.update(1)
                    if started < episodes:
                        start(i)
        bar.close()
        return {
            "success": float(np.mean(successes)),
            "return": float(np.mean(returns)),
            "length": float(np.mean(lengths)),
            "episodes": len(successes),
        }
