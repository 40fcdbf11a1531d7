"""docs/adding_an_agent.md, step by step, for the toy agent the page builds: "behaviour cloning with a critic".

Each test is one step of the page. The agent is the page's own code: its step-1 blocks, run as they stand
with the imports an agent file has, so a change to the page is a change to this test.
"""

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qflow import agents as agent_registry
from qflow.agents.base import Agent, acting_state
from qflow.envs import agent_config
from qflow.errors import TrainingDiverged
from qflow.training import loop
from qflow.training.steps import make_train_chunk

PAGE = Path(__file__).resolve().parents[1] / "docs" / "adding_an_agent.md"
AGENT_FILE_IMPORTS = """
import dataclasses
import jax
import jax.numpy as jnp
from qflow.agents.base import AgentConfig, TargetCriticAgent, clip_actions, require, td_loss
from qflow.networks import MLP, Critic
"""


def page_agent_file() -> str:
    """The Python blocks of the page's step 1 ("The agent file"), joined in order: one module."""
    text = PAGE.read_text()
    step1 = text[text.index("## 1. The agent file"):text.index("## 2.")]
    blocks = re.findall(r"```python\n(.*?)```", step1, re.S)
    assert len(blocks) == 3, "step 1 of the page should hold the config, the class header and its methods"
    return AGENT_FILE_IMPORTS + "\n".join(blocks)


_namespace = {"__name__": "bc_critic_from_the_page"}
exec(compile(page_agent_file(), str(PAGE), "exec"), _namespace)
BCCriticConfig, BCCriticAgent = _namespace["BCCriticConfig"], _namespace["BCCriticAgent"]


# ---------------------------------------------------------------- step 2: the registry
@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(agent_registry.AGENTS, "bc_critic", (BCCriticAgent, BCCriticConfig))
    return "bc_critic"


def tiny_problem(rows=512, obs_dim=4, action_dim=2, seed=0):
    """Random states; the data's action is a fixed smooth function of the state, so BC can learn it."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(rows, obs_dim)).astype(np.float32)
    w = rng.normal(size=(obs_dim, action_dim)).astype(np.float32) / 2
    return {"observations": obs, "actions": np.tanh(obs @ w), "rewards": rng.normal(size=rows).astype(np.float32),
            "next_observations": rng.normal(size=(rows, obs_dim)).astype(np.float32),
            "masks": np.ones(rows, np.float32)}


def config_for(name):
    return agent_config(name, "pointmaze-medium-navigate-v0", "tiny",
                        ["actor_dims=32,32", "critic_dims=32,32", "batch_size=64", "lr=1e-3"])


def test_the_registered_agent_gets_a_config_with_the_family_discount(registered):
    from qflow.data.registry import family_of

    config = config_for(registered)
    assert isinstance(config, BCCriticConfig)
    assert config.discount == family_of("pointmaze-medium-navigate-v0").discount  # no env-table row needed
    with pytest.raises(ValueError, match="bc_weight must be > 0"):
        agent_config(registered, None, "tiny", ["bc_weight=0"])


def test_the_protocol_members_are_declared(registered):
    cls, config_cls = agent_registry.get_agent(registered)
    agent = cls.create(0, 4, 2, config_for(registered))
    assert not cls.HAS_DIAGNOSTICS  # no diagnostics defined: the training chunk traces none
    assert set(acting_state(agent)["params"]) == {"actor"}
    new, info = jax.jit(lambda a, b: a.update(b))(agent, jax.tree.map(lambda x: x[:64], tiny_problem()))
    assert set(cls.LOSSES) <= set(info)  # update returns every declared loss, as a scalar
    assert all(np.ndim(info[k]) == 0 for k in cls.LOSSES)


class _Job:
    """The smallest ``loop.Job``: train chunks, stop on a non-finite declared loss, keep the log rows."""

    def __init__(self, agents, data, total, chunk, run_dir):
        self.agents, self.data, self.total, self.chunk, self.dirs = agents, data, total, chunk, [run_dir]
        self.every, self.desc, self.rows = {"log": chunk}, "toy", []
        self.train_chunk = make_train_chunk(chunk)

    def restore(self):
        return 0

    def advance(self, step):
        self.agents, info = self.train_chunk(self.agents, self.data)
        info = jax.device_get(info)
        loop.check_finite(info, step + self.chunk, self.dirs, self.agents)
        return step + self.chunk, info

    def log(self, step, means):
        self.rows.append({"step": step, **{k: float(v[0]) for k, v in means.items()}})

    def finish(self, step, stop):
        return stop


def test_training_through_the_loop_reduces_the_declared_losses(registered, tmp_path):
    cls, _ = agent_registry.get_agent(registered)
    data = jax.tree.map(jnp.asarray, tiny_problem())
    agents = loop.stack([cls.create(0, 4, 2, config_for(registered))])
    job = _Job(agents, data, total=400, chunk=50, run_dir=tmp_path)
    assert loop.run(job, progress=False) == "steps reached"
    first, last = job.rows[0], job.rows[-1]
    assert [r["step"] for r in job.rows] == list(range(50, 401, 50))
    assert last["bc"] < 0.25 * first["bc"], (first, last)  # BC fits the smooth action function
    assert not any(k.startswith("diag_") for k in last)
    actions = cls.sample_actions(loop.unstack(job.agents, 1)[0], data["observations"][:64], jax.random.PRNGKey(0))
    assert float(jnp.mean((actions - data["actions"][:64]) ** 2)) < 0.05


def test_check_finite_stops_on_a_declared_loss_whatever_its_name(registered, tmp_path):
    cls, _ = agent_registry.get_agent(registered)
    agents = loop.stack([cls.create(0, 4, 2, config_for(registered))])
    finite = {"bc": np.array([0.1]), "td": np.array([0.2]), "q_mean": np.array([np.nan])}  # q_mean: not a loss
    loop.check_finite(finite, 50, [tmp_path], agents)
    with pytest.raises(TrainingDiverged, match="non-finite td at step 50"):
        loop.check_finite({**finite, "td": np.array([np.nan])}, 50, [tmp_path], agents)
    # a caller without the agents at hand (online fine-tuning) names the losses itself
    with pytest.raises(TrainingDiverged, match="non-finite bc"):
        loop.check_finite({**finite, "bc": np.array([np.inf])}, 50, [tmp_path], losses=cls.LOSSES)


def test_an_update_without_a_declared_loss_is_refused(registered):
    class Forgetful(BCCriticAgent):
        LOSSES = ("bc", "td", "entropy")  # declared, never returned

    agent = Forgetful.create(0, 4, 2, config_for(registered))
    with pytest.raises(ValueError, match=r"missing \['entropy'\]"):
        agent.update(jax.tree.map(lambda x: x[:64], tiny_problem()))


def test_protocol_slips_are_refused_where_they_are_made(registered):
    with pytest.raises(TypeError, match="keeps the plain gradient-step update"):
        class WithCounter(Agent):  # keeps Agent's plain gradient-step update
            @classmethod
            def extra_state(cls, params):
                return {"count": 0}

    class NoActor(BCCriticAgent):
        ACTING_PARAMS = ("policy",)  # no network of that name

    with pytest.raises(TypeError, match=r"ACTING_PARAMS names \['policy'\]"):
        NoActor.create(0, 4, 2, config_for(registered))
