"""IQL, ReBRAC and IFQL: losses against NumPy, gradient routing, delayed actor, training, configs."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qflow.agents.base import build_config
from qflow.agents.ifql import IFQLAgent, IFQLConfig
from qflow.agents.iql import IQLAgent, IQLConfig
from qflow.agents.rebrac import ReBRACAgent, ReBRACConfig
from qflow.envs import ENV_TABLE
from qflow.training.loop import stack
from qflow.training.steps import make_train_chunk
from tests.helpers import assert_routing
from tests.helpers import random_batch as qflow_random_batch

OBS, ACT, B = 3, 2, 16
TINY = dict(actor_dims=(8,), critic_dims=(8,))


def tiny(agent_cls, cfg_cls, seed=0, **overrides):
    cfg = dataclasses.replace(build_config(cfg_cls, "paper"), **TINY, **overrides)
    return agent_cls.create(seed, OBS, ACT, cfg)


def random_batch(seed=0, batch=B):
    return qflow_random_batch(seed, batch)


def jitter(tree, seed, scale=0.3):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(treedef, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


_JITTED = {}


def np_out(net, params, *args):
    """A network's output as float64 NumPy (jitted: op-by-op dispatch is slow on a small CPU)."""
    apply = _JITTED.setdefault(id(net), (net, jax.jit(net.apply)))[1]
    return np.asarray(apply(params, *args), np.float64)


def losses(agent, params, batch, noise):
    return jax.jit(type(agent).losses)(agent, params, batch, noise)


def unpack(batch):
    s, s2, a, r, m = (np.asarray(batch[k], np.float64) for k in
                      ("observations", "next_observations", "actions", "rewards", "masks"))
    return s, s2, a, r, m


def np_expectile(diff, tau):
    return np.where(diff > 0, tau, 1 - tau) * diff**2


def centre_value(agent, batch):
    """Shift V's output bias so that Qbar(s, a) - V(s) changes sign across the batch."""
    s, _, a, _, _ = unpack(batch)
    qbar = np_out(agent.nets["critic"], agent.target_critic, s, a).min(0)
    shift = np.median(qbar - np_out(agent.nets["value"], agent.params["value"], s))
    value = jax.tree.map(lambda x: x, agent.params["value"])
    head = value["params"]["Ensemble_0"]["VmapMLP_0"]["Dense_1"]
    head["bias"] = head["bias"] + shift
    return agent.replace(params={**agent.params, "value": value})


# ---------------------------------------------------------------------------------------------- IQL
def iql_agent(**kw):
    agent = tiny(IQLAgent, IQLConfig, **kw)
    return agent.replace(target_critic=jitter(agent.target_critic, 1))


def test_iql_losses_match_numpy():
    agent = iql_agent(alpha=3.0, expectile=0.8, max_weight=1.5)
    # Shift V so some advantages are positive and some negative; give log_std a non-zero value.
    batch = random_batch()
    agent = centre_value(agent, batch)
    params = dict(agent.params, actor={"params": {**agent.params["actor"]["params"],
                                                  "log_std": jnp.array([-0.3, 0.4])}})
    agent = agent.replace(params=params)
    total, info = losses(agent, agent.params, batch, agent.draw_noise(jax.random.PRNGKey(0), B, ACT))

    nets, gamma = agent.nets, agent.config.discount
    s, s2, a, r, m = unpack(batch)
    qbar = np_out(nets["critic"], agent.target_critic, s, a).min(0)
    v, v2 = np_out(nets["value"], params["value"], s), np_out(nets["value"], params["value"], s2)
    q = np_out(nets["critic"], params["critic"], s, a)
    adv = qbar - v
    assert (adv > 0).any() and (adv < 0).any(), "both expectile branches must be exercised"
    np.testing.assert_allclose(info["loss_v"], np_expectile(adv, 0.8).mean(), rtol=1e-5)
    td = r + gamma * m * v2
    np.testing.assert_allclose(info["td_target"], td, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info["loss_q"], np.mean((q - td) ** 2), rtol=1e-5)

    w = np.minimum(np.exp(3.0 * adv), 1.5)
    assert (w == 1.5).any() and (w < 1.5).any(), "the weight clip must be exercised"
    np.testing.assert_allclose(info["weights"], w, rtol=1e-5)
    mean = np.asarray(jax.jit(nets["actor"].apply)(params["actor"], batch["observations"])[0], np.float64)
    assert np.all(np.abs(mean) < 1), "tanh-squashed mean"
    log_std = np.array([-0.3, 0.4])
    logp = np.sum(-0.5 * ((a - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi), -1)
    np.testing.assert_allclose(info["loss_actor"], -np.mean(w * logp), rtol=1e-5)
    np.testing.assert_allclose(total, info["loss_q"] + info["loss_v"] + info["loss_actor"], rtol=1e-6)

    acts = jax.jit(IQLAgent.sample_actions)(agent, batch["observations"], jax.random.PRNGKey(5))
    np.testing.assert_allclose(acts, np.clip(mean, -1, 1), rtol=1e-6, atol=1e-7)  # the mean action


@pytest.mark.parametrize("loss, own, frozen", [("loss_q", "critic", ("actor", "value")),
                                               ("loss_v", "value", ("actor", "critic")),
                                               ("loss_actor", "actor", ("critic", "value"))])
def test_iql_gradients_do_not_cross_modules(loss, own, frozen):
    agent = iql_agent()
    assert_routing(agent, random_batch(), {}, loss, own, frozen)


# ---------------------------------------------------------------------------------------------- ReBRAC
def rebrac_agent(**kw):
    agent = tiny(ReBRACAgent, ReBRACConfig, **kw)
    return agent.replace(target_params=jitter(agent.target_params, 1))


@pytest.mark.parametrize("alpha_critic", [0.0, 0.7])
def test_rebrac_losses_match_numpy(alpha_critic):
    agent = rebrac_agent(alpha_actor=0.4, alpha_critic=alpha_critic, actor_noise=0.6, actor_noise_clip=0.5)
    batch = random_batch()
    batch["next_actions"] = jnp.asarray(np.random.default_rng(9).uniform(-1, 1, (B, ACT)), jnp.float32)
    noise = agent.draw_noise(jax.random.PRNGKey(3), B, ACT)
    total, info = losses(agent, agent.params, batch, noise)

    nets, gamma, p, tp = agent.nets, agent.config.discount, agent.params, agent.target_params
    s, s2, a, r, m = unpack(batch)
    eps = 0.6 * np.asarray(noise["target_noise"], np.float64)
    assert (np.abs(eps) > 0.5).any(), "the noise clip must be exercised"
    a2 = np.clip(np.tanh(np_out(nets["actor"], tp["actor"], s2)) + np.clip(eps, -0.5, 0.5), -1, 1)
    q2 = np_out(nets["critic"], tp["critic"], s2, a2.astype(np.float32)).min(0)
    q2 = q2 - alpha_critic * np.sum((a2 - np.asarray(batch["next_actions"])) ** 2, -1)
    td = r + gamma * m * q2
    np.testing.assert_allclose(info["td_target"], td, rtol=1e-4, atol=1e-5)
    q = np_out(nets["critic"], p["critic"], s, a)
    np.testing.assert_allclose(info["loss_q"], np.mean((q - td) ** 2), rtol=1e-4)

    pi = np.tanh(np_out(nets["actor"], p["actor"], s))
    q_pi = np_out(nets["critic"], p["critic"], s, pi.astype(np.float32)).min(0)
    actor = -q_pi.mean() / np.abs(q_pi).mean() + 0.4 * np.sum((pi - a) ** 2, -1).mean()
    np.testing.assert_allclose(info["loss_actor"], actor, rtol=1e-4)
    np.testing.assert_allclose(total, info["loss_q"] + info["loss_actor"], rtol=1e-6)  # step 0: actor step


def test_rebrac_critic_penalty_needs_next_actions():
    agent = rebrac_agent(alpha_critic=0.1)
    with pytest.raises(ValueError, match="needs batch\\['next_actions'\\].*alpha_critic=0"):
        agent.update(random_batch())


@pytest.mark.parametrize("loss, own, frozen", [("loss_q", "critic", ("actor",)), ("loss_actor", "actor", ("critic",))])
def test_rebrac_gradients_do_not_cross_modules(loss, own, frozen):
    agent = rebrac_agent()
    assert_routing(agent, random_batch(), agent.draw_noise(jax.random.PRNGKey(0), B, ACT), loss, own, frozen)


def test_rebrac_delayed_actor_updates():
    agent = rebrac_agent(actor_freq=3)
    batch = random_batch()
    noise = agent.draw_noise(jax.random.PRNGKey(0), B, ACT)
    actor_grad = jax.jit(lambda a: jax.grad(lambda p: a.losses(p, batch, noise)[0])(a.params)["actor"])
    update = jax.jit(ReBRACAgent.update)
    for step, actor_moves in [(0, True), (1, False), (2, False), (3, True)]:
        a = agent.replace(step=jnp.asarray(step, jnp.int32))  # the counter is traced: one compile for all steps
        g = actor_grad(a)
        assert any(np.any(np.asarray(x) != 0) for x in jax.tree.leaves(g)) == actor_moves, step
        new, _ = update(a, batch)
        assert int(new.step) == step + 1
        same = jax.tree.map(lambda x, y: bool(np.all(np.asarray(x) == np.asarray(y))),
                            new.target_params["actor"], a.target_params["actor"])
        assert all(jax.tree.leaves(same)) != actor_moves, f"target actor EMA wrong at step {step}"
        assert not all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.all(x == y)),
                                                    new.target_params["critic"], a.target_params["critic"])))


# ---------------------------------------------------------------------------------------------- IFQL
def ifql_agent(**kw):
    agent = tiny(IFQLAgent, IFQLConfig, **kw)
    return agent.replace(target_critic=jitter(agent.target_critic, 1, scale=1.0))


def test_ifql_losses_match_numpy():
    agent = ifql_agent(expectile=0.7)
    batch = random_batch()
    agent = centre_value(agent, batch)
    noise = agent.draw_noise(jax.random.PRNGKey(4), B, ACT)
    total, info = losses(agent, agent.params, batch, noise)

    nets, gamma, p = agent.nets, agent.config.discount, agent.params
    s, s2, a, r, m = unpack(batch)
    qbar = np_out(nets["critic"], agent.target_critic, s, a).min(0)
    v = np_out(nets["value"], p["value"], s)
    assert (qbar > v).any() and (qbar < v).any()
    np.testing.assert_allclose(info["loss_v"], np_expectile(qbar - v, 0.7).mean(), rtol=1e-5)
    td = r + gamma * m * np_out(nets["value"], p["value"], s2)
    q = np_out(nets["critic"], p["critic"], s, a)
    np.testing.assert_allclose(info["loss_q"], np.mean((q - td) ** 2), rtol=1e-5)
    x0, tau = np.asarray(noise["x0"]), np.asarray(noise["tau"])
    x_tau = ((1 - tau[:, None]) * x0 + tau[:, None] * a).astype(np.float32)
    pred = np_out(nets["flow"], p["flow"], batch["observations"], x_tau, noise["tau"])
    np.testing.assert_allclose(info["loss_flow"], np.mean((pred - (a - x0)) ** 2), rtol=1e-4)
    np.testing.assert_allclose(total, info["loss_q"] + info["loss_v"] + info["loss_flow"], rtol=1e-6)


@pytest.mark.parametrize("loss, own, frozen", [("loss_q", "critic", ("flow", "value")),
                                               ("loss_v", "value", ("flow", "critic")),
                                               ("loss_flow", "flow", ("critic", "value"))])
def test_ifql_gradients_do_not_cross_modules(loss, own, frozen):
    agent = ifql_agent()
    assert_routing(agent, random_batch(), agent.draw_noise(jax.random.PRNGKey(0), B, ACT), loss, own, frozen)


def test_ifql_acts_with_the_argmax_q_flow_sample():
    agent = ifql_agent(num_samples=8, flow_steps=3)
    obs = random_batch()["observations"][:5]
    x0 = jax.random.normal(jax.random.PRNGKey(7), (5, 8, ACT))
    best, cand, q = jax.jit(IFQLAgent.best_of_n)(agent, obs, x0)

    nets = agent.nets
    for b in range(5):  # NumPy Euler flow and mean-head target Q for each candidate of each state
        o = np.repeat(np.asarray(obs[b:b + 1]), 8, 0)
        x = np.asarray(x0[b], np.float64)
        for i in range(3):
            t = np.full(8, i / 3, np.float32)
            x = x + np_out(nets["flow"], agent.params["flow"], o, x.astype(np.float32), t) / 3
        x = np.clip(x, -1, 1)
        np.testing.assert_allclose(cand[b], x, rtol=1e-4, atol=1e-5)
        qs = np_out(nets["critic"], agent.target_critic, o, x.astype(np.float32)).mean(0)
        np.testing.assert_allclose(q[b], qs, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(best[b], cand[b, int(np.argmax(qs))])
    assert len({int(i) for i in np.argmax(np.asarray(q), 1)}) > 1, "choice should depend on the state"

    act = jax.jit(IFQLAgent.sample_actions)
    one, many = act(agent, obs[0], jax.random.PRNGKey(0)), act(agent, obs, jax.random.PRNGKey(0))
    assert one.shape == (ACT,) and many.shape == (5, ACT)
    assert np.all(np.abs(np.asarray(many)) <= 1)


# ---------------------------------------------------------------------------------------------- all three
AGENTS = [(IQLAgent, IQLConfig), (ReBRACAgent, ReBRACConfig), (IFQLAgent, IFQLConfig)]


@pytest.mark.parametrize("agent_cls, cfg_cls", AGENTS, ids=["iql", "rebrac", "ifql"])
def test_stacked_training_stays_finite(agent_cls, cfg_cls):
    r = np.random.default_rng(0)
    n = 512
    data = {
        "observations": jnp.asarray(r.normal(size=(n, OBS)), jnp.float32),
        "next_observations": jnp.asarray(r.normal(size=(n, OBS)), jnp.float32),
        "actions": jnp.asarray(np.clip(r.normal(scale=0.5, size=(n, ACT)), -1, 1), jnp.float32),
        "rewards": jnp.asarray(-(r.random(n) < 0.9).astype(np.float32)),
        "masks": jnp.asarray(r.random(n) < 0.95, jnp.float32),
    }
    cfg = dataclasses.replace(build_config(cfg_cls, "paper"), **TINY, batch_size=32)
    agents = stack([agent_cls.create(s, OBS, ACT, cfg) for s in (0, 1)])
    agents, info = make_train_chunk(200)(agents, data)
    assert set(agent_cls.LOSSES) <= set(info) and len(agent_cls.LOSSES) >= 2
    for k, v in info.items():
        assert np.all(np.isfinite(np.asarray(v))), k
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(agents.params))
    if agent_cls is ReBRACAgent:
        np.testing.assert_array_equal(agents.step, [200, 200])
    acts = jax.vmap(lambda ag: ag.sample_actions(data["observations"][:4], jax.random.PRNGKey(0)))(agents)
    assert acts.shape == (2, 4, ACT) and np.all(np.isfinite(np.asarray(acts)))


@pytest.mark.parametrize("cfg_cls, override, message", [
    (IQLConfig, "expectile=1.0", "expectile must be in \\(0, 1\\).*--set expectile"),
    (IQLConfig, "alpha=-1", "alpha must be >= 0.*--set alpha"),
    (IQLConfig, "max_weight=0", "max_weight must be > 0"),
    (ReBRACConfig, "alpha_actor=-0.1", "alpha_actor must be >= 0.*--set alpha_actor"),
    (ReBRACConfig, "alpha_critic=-1", "alpha_critic must be >= 0"),
    (ReBRACConfig, "actor_noise=-0.2", "actor_noise must be >= 0"),
    (ReBRACConfig, "actor_freq=0", "actor_freq must be >= 1.*--set actor_freq=2"),
    (IFQLConfig, "num_samples=0", "num_samples must be >= 1.*--set num_samples=32"),
    (IFQLConfig, "flow_steps=0", "flow_steps must be >= 1"),
    (IFQLConfig, "expectile=0", "expectile must be in \\(0, 1\\)"),
])
def test_invalid_hyperparameters_raise_clear_errors(cfg_cls, override, message):
    with pytest.raises(ValueError, match=message):
        build_config(cfg_cls, overrides=[override])


@pytest.mark.parametrize("family", sorted(ENV_TABLE))
def test_env_table_rows_are_valid_and_share_the_fql_discount(family):
    row = ENV_TABLE[family]
    fql_discount = row.get("fql", {}).get("discount", 0.99)
    for name, cfg_cls in [("iql", IQLConfig), ("rebrac", ReBRACConfig), ("ifql", IFQLConfig)]:
        assert name in row, f"{family} has no {name} row"
        cfg = build_config(cfg_cls, "paper", row[name])
        assert cfg.discount == fql_discount, (family, name)
        if name == "rebrac":  # the critic penalty asks the loader for next actions exactly when it is on
            assert cfg.extra_data() == (("next_actions",) if cfg.alpha_critic > 0 else ())
