"""Agents: each is an immutable pytree with ``create``, a jittable ``update`` and ``sample_actions``."""

from qflow.agents.flow_bc import FlowBCAgent, FlowBCConfig
from qflow.agents.qflow import QFlowAgent, QFlowConfig

AGENTS = {"qflow": (QFlowAgent, QFlowConfig), "flow_bc": (FlowBCAgent, FlowBCConfig)}


def get_agent(name: str):
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; available: {', '.join(sorted(AGENTS))}")
    return AGENTS[name]
