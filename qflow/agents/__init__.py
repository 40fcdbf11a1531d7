"""Agents: each is an immutable pytree with ``create``, a jittable ``update`` and ``sample_actions``."""

from qflow.agents.fbrac import FBRACAgent, FBRACConfig
from qflow.agents.flow_bc import FlowBCAgent, FlowBCConfig
from qflow.agents.fql import FQLAgent, FQLConfig
from qflow.agents.ifql import IFQLAgent, IFQLConfig
from qflow.agents.iql import IQLAgent, IQLConfig
from qflow.agents.qflow import QFlowAgent, QFlowConfig
from qflow.agents.rebrac import ReBRACAgent, ReBRACConfig
from qflow.agents.sac import SACAgent, SACConfig

AGENTS = {
    "qflow": (QFlowAgent, QFlowConfig),
    "fql": (FQLAgent, FQLConfig),
    "flow_bc": (FlowBCAgent, FlowBCConfig),
    "fbrac": (FBRACAgent, FBRACConfig),
    "iql": (IQLAgent, IQLConfig),
    "rebrac": (ReBRACAgent, ReBRACConfig),
    "ifql": (IFQLAgent, IFQLConfig),
    "sac": (SACAgent, SACConfig),  # online RL (no behaviour regularisation): for experts and online baselines
}


def get_agent(name: str):
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; available: {', '.join(sorted(AGENTS))}")
    return AGENTS[name]
