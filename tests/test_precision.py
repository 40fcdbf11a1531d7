"""matmul_precision: one update in each precision against float32 (on this CPU)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qflow.agents import get_agent
from qflow.agents.base import build_config, config_from_record

B, OBS, ACT = 64, 10, 3


def _batch():
    rng = np.random.default_rng(0)
    batch = dict(observations=rng.normal(size=(B, OBS)), actions=rng.uniform(-1, 1, size=(B, ACT)),
                 rewards=rng.normal(size=B), masks=np.ones(B), next_observations=rng.normal(size=(B, OBS)))
    return {k: jnp.asarray(v, jnp.float32) for k, v in batch.items()}


def _one_update(name, precision):
    agent_cls, config_cls = get_agent(name)
    config = build_config(config_cls, "tiny", None, [f"batch_size={B}", f"matmul_precision={precision}"])
    agent, info = jax.jit(lambda a, b: a.update(b))(agent_cls.create(0, OBS, ACT, config), _batch())
    return info, agent.params, config.lr


@pytest.mark.parametrize("name", ["qflow", "fql"])
def test_bf16_stays_within_tolerance_of_float32(name):
    ref_info, ref_params, lr = _one_update(name, "float32")
    info, params, _ = _one_update(name, "bf16")
    losses = get_agent(name)[0].LOSSES
    # bf16 rounding really happens (on a CPU too) ...
    assert any(float(info[k]) != float(ref_info[k]) for k in losses)
    # ... and costs at most 1 % of any loss; one Adam step moves each parameter by about lr * sign(grad),
    # so the parameters differ by at most 2 lr (a gradient coordinate whose sign flipped)
    for k in losses:
        assert float(info[k]) == pytest.approx(float(ref_info[k]), rel=1e-2), k
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params)))
    assert diff <= 2 * lr + 1e-6


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="on GPUs tf32 and default use tensor cores")
@pytest.mark.parametrize("precision", ["tf32", "default"])
def test_tf32_and_default_are_exact_float32_on_a_cpu(precision):
    ref_info, ref_params, _ = _one_update("qflow", "float32")
    info, params, _ = _one_update("qflow", precision)
    assert all(float(info[k]) == float(ref_info[k]) for k in ref_info)
    assert all(bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params)))


@pytest.mark.parametrize("name", ["qflow", "fql", "fbrac", "flow_bc", "ifql", "iql", "rebrac", "sac"])
def test_every_network_of_every_agent_takes_the_setting(name):
    agent_cls, config_cls = get_agent(name)
    agent = agent_cls.create(0, OBS, ACT, build_config(config_cls, "tiny", None, ["matmul_precision=bf16"]))
    assert {key: net.precision for key, net in agent.nets.items()} == {key: "bf16" for key in agent.nets}


def test_precision_is_validated_and_old_records_read_as_the_platform_default():
    config_cls = get_agent("fql")[1]
    with pytest.raises(ValueError, match="matmul_precision must be one of float32, tf32, bf16, default"):
        build_config(config_cls, "cpu", None, ["matmul_precision=fp16"])
    record = build_config(config_cls, "cpu").as_dict()
    del record["matmul_precision"]  # written before the key existed: those runs used the platform's default
    assert config_from_record(config_cls, record).matmul_precision == "default"
