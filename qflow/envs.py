"""Per-environment hyperparameters (the Q-Flow paper's table; pointmaze is not in the paper)."""

from __future__ import annotations

from qflow.data.registry import env_family

# family -> agent -> config values. Looked up by the longest matching family prefix.
ENV_TABLE: dict[str, dict[str, dict]] = {
    "antmaze-large-navigate": {"qflow": dict(guidance_lambda=0.2, q_agg="mean", discount=0.99, time_embed_dim=64)},
    "antmaze-giant-navigate": {"qflow": dict(guidance_lambda=0.2, q_agg="min", discount=0.995, time_embed_dim=64)},
    "antsoccer-arena-navigate": {"qflow": dict(guidance_lambda=0.5, q_agg="mean", discount=0.995, time_embed_dim=64)},
    "humanoidmaze-medium-navigate": {"qflow": dict(guidance_lambda=1.0, q_agg="mean", discount=0.995, time_embed_dim=64)},
    "humanoidmaze-large-navigate": {"qflow": dict(guidance_lambda=1.0, q_agg="mean", discount=0.995, time_embed_dim=64)},
    "cube-single-play": {"qflow": dict(guidance_lambda=5.0, q_agg="mean", discount=0.99, time_embed_dim=64)},
    "cube-double-play": {"qflow": dict(guidance_lambda=2.0, q_agg="mean", discount=0.99, time_embed_dim=16)},
    "scene-play": {"qflow": dict(guidance_lambda=5.0, q_agg="mean", discount=0.99, time_embed_dim=64)},
    "puzzle-3x3-play": {"qflow": dict(guidance_lambda=20.0, q_agg="min", discount=0.99, time_embed_dim=64)},
    "puzzle-4x4-play": {"qflow": dict(guidance_lambda=20.0, q_agg="min", discount=0.99, time_embed_dim=64)},
    "pointmaze": {"qflow": dict(guidance_lambda=1.0, q_agg="mean", discount=0.99, time_embed_dim=64)},
}


def env_defaults(env_id: str, agent: str) -> dict:
    family = env_family(env_id)
    matches = [k for k in ENV_TABLE if family.startswith(k)]
    if not matches:
        return {}
    return dict(ENV_TABLE[max(matches, key=len)].get(agent, {}))
