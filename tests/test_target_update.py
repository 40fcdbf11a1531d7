"""The order of the target update and Q-Flow's draws for L_V and L_pi, each pinned on a hand computation.

target_update = "pre": target <- (1 - r) target + r critic_before_the_step (the authors' code, FQL's
reference); "post": toward the critic after the step (this project's runs before 2026-12-01, which
records without the key are read as). shared_draw = False: L_V and L_pi each take their own (x0, tau).
"""

import dataclasses

import jax
import numpy as np
import pytest

from qflow.agents import get_agent
from qflow.agents.base import build_config, config_from_record
from tests.helpers import ACT, B, OBS, random_batch, tiny_agent

RATE = 0.25  # large, so that the two orders differ far above float32 rounding


def small(name: str, **overrides):
    agent_cls, config_cls = get_agent(name)
    sets = [f"{k}={v}" for k, v in {"actor_dims": "8", "critic_dims": "8", "target_update_rate": RATE,
                                      **overrides}.items()]
    if name == "qflow":
        sets.append("time_embed_dim=4")
    return agent_cls.create(0, OBS, ACT, build_config(config_cls, "paper", overrides=sets))


def expected_ema(target, source):
    return jax.tree.map(lambda t, s: (1 - RATE) * np.asarray(t) + RATE * np.asarray(s), target, source)


def assert_trees_close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["qflow", "fql", "fbrac", "ifql", "iql", "sac"])
def test_target_critic_moves_toward_the_critic_before_or_after_the_step(name):
    batch = random_batch(batch=B)
    for order in ("pre", "post"):
        agent = small(name, target_update=order)
        agent = agent.replace(target_critic=jax.tree.map(lambda x: x + 0.5, agent.target_critic))
        new, _ = jax.jit(lambda a: a.update(batch))(agent)
        source = agent.params["critic"] if order == "pre" else new.params["critic"]
        assert_trees_close(new.target_critic, expected_ema(agent.target_critic, source))
    moved = [np.abs(np.asarray(a) - np.asarray(b)).max()
             for a, b in zip(jax.tree.leaves(agent.params["critic"]), jax.tree.leaves(new.params["critic"]))]
    assert max(moved) > 1e-4  # the critic changed in the step, so the two orders are told apart


def test_rebrac_targets_follow_the_same_order():
    batch = {**random_batch(batch=B), "next_actions": random_batch(seed=5, batch=B)["actions"]}
    for order in ("pre", "post"):
        agent = small("rebrac", target_update=order, actor_freq=1)
        new, _ = jax.jit(lambda a: a.update(batch))(agent)
        source = agent.params if order == "pre" else new.params
        assert_trees_close(new.target_params["critic"], expected_ema(agent.target_params["critic"], source["critic"]))
        assert_trees_close(new.target_params["actor"], expected_ema(agent.target_params["actor"], source["actor"]))


def test_records_without_the_key_ran_with_the_post_update_order():
    from qflow.training.record import RunRecord

    for name in ("qflow", "fql", "rebrac", "sac"):
        config_cls = get_agent(name)[1]
        old = {k: v for k, v in dataclasses.asdict(config_cls()).items()
               if k not in ("target_update", "freeze", "shared_draw")}
        assert config_from_record(config_cls, old).target_update == "post"
        assert config_cls().target_update == "pre"
        # an old run is the same run as today's config with the old order: it resumes with --set target_update=post
        today = dataclasses.asdict(dataclasses.replace(config_cls(), target_update="post"))
        assert RunRecord.differences({"agent": name, "config": old}, {"agent": name, "config": today}, ("config",)) == []
    flow_bc = get_agent("flow_bc")[1]  # no target network: nothing to relabel
    assert config_from_record(flow_bc, {"flow_steps": 10}).target_update == "pre"
    with pytest.raises(ValueError, match="target_update must be 'pre' or 'post'"):
        build_config(get_agent("fql")[1], "cpu", overrides=["target_update=before"])


def test_separate_draws_route_each_draw_to_its_own_loss():
    """Without shared_draw, L_V reads only (x0, tau) and L_pi only (x0_pi, tau_pi): handing L_pi the first
    draw gives the shared-draw losses exactly, and a new second draw moves L_pi alone."""
    shared, separate = tiny_agent(), tiny_agent(shared_draw=False)
    batch = random_batch()
    noise = separate.draw_noise(jax.random.PRNGKey(7), B, ACT)
    assert {"x0_pi", "tau_pi", "weight_pi"} <= set(noise)
    assert not np.allclose(noise["x0_pi"], noise["x0"]) and not np.allclose(noise["tau_pi"], noise["tau"])
    first = {k: noise[k] for k in ("x_next", "x0", "tau", "weight")}
    _, reference = shared.losses(shared.params, batch, first)
    same = {**noise, "x0_pi": noise["x0"], "tau_pi": noise["tau"], "weight_pi": noise["weight"]}
    _, info = separate.losses(separate.params, batch, same)
    for key in ("loss_q", "loss_v", "loss_pi"):
        assert float(info[key]) == float(reference[key])
    _, moved = separate.losses(separate.params, batch, noise)
    assert float(moved["loss_v"]) == float(reference["loss_v"]) and float(moved["loss_q"]) == float(reference["loss_q"])
    assert float(moved["loss_pi"]) != float(reference["loss_pi"])


def test_shared_draw_keeps_its_random_stream():
    """The default draw is the one every earlier run made: split(rng, 3) into TD noise, x0 and tau."""
    from qflow.agents.qflow import sample_tau

    agent, rng = tiny_agent(), jax.random.PRNGKey(11)
    noise = agent.draw_noise(rng, B, ACT)
    k_next, k_x0, k_tau = jax.random.split(rng, 3)
    assert set(noise) == {"x_next", "x0", "tau", "weight"}
    np.testing.assert_array_equal(noise["x_next"], jax.random.normal(k_next, (B, ACT)))
    np.testing.assert_array_equal(noise["x0"], jax.random.normal(k_x0, (B, ACT)))
    np.testing.assert_array_equal(noise["tau"], sample_tau(k_tau, B, agent.config.flow_steps, True)[0])


def test_freeze_holds_the_named_params_fixed_and_trains_the_rest():
    """An intervention: --set freeze=critic keeps the critic's values through Adam's momentum; the target
    still averages toward it; the actor and V train as usual."""
    batch = random_batch()
    agent = small("qflow", freeze="critic")
    agent = agent.replace(target_critic=jax.tree.map(lambda x: x + 0.5, agent.target_critic))
    step = jax.jit(lambda a: a.update(batch))
    new = agent
    for _ in range(3):  # after the first step Adam's moments are non-zero: an update would move it
        new, _ = step(new)
    for a, b in zip(jax.tree.leaves(agent.params["critic"]), jax.tree.leaves(new.params["critic"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for name in ("actor", "value"):
        assert any(np.abs(np.asarray(a) - np.asarray(b)).max() > 0 for a, b in
                   zip(jax.tree.leaves(agent.params[name]), jax.tree.leaves(new.params[name])))
    expected = jax.tree.map(lambda t, c: (1 - RATE) ** 3 * np.asarray(t) + (1 - (1 - RATE) ** 3) * np.asarray(c),
                            agent.target_critic, agent.params["critic"])
    assert_trees_close(new.target_critic, expected)
    with pytest.raises(ValueError, match=r"freeze names \['critc'\].*actor, critic, value"):
        small("qflow", freeze="critc")
