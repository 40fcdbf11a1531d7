"""The ant expert as an acting interface: what the antmaze recipe needs to generate data.

It lives with the agents (not with the training that makes it) so that dataset generation never
imports the training package: ``qflow expert train`` writes the file, ``Expert`` reads it and acts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import flax.serialization
import jax
import numpy as np

from qflow.agents.base import config_from_record
from qflow.agents.sac import SACAgent, SACConfig
from qflow.utils import atomic_writer

EXPERT_FILE = "expert.msgpack"


def save_expert(path: Path, agent: SACAgent, meta: dict) -> None:
    payload = {"meta": json.dumps(meta), "actor": flax.serialization.to_state_dict(agent.params["actor"])}
    with atomic_writer(Path(path)) as f:
        f.write(flax.serialization.msgpack_serialize(payload))


class Expert:
    """A saved expert: ``act(obs [n, 29]) -> actions [n, 8]`` (deterministic tanh(mean)), ``meta``, ``sha256``."""

    def __init__(self, path: Path | str):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no expert at {path}; train one with: qflow expert train --run-dir DIR "
                                    f"(it writes DIR/{EXPERT_FILE})")
        raw = path.read_bytes()
        try:
            payload = flax.serialization.msgpack_restore(raw)
            self.meta = json.loads(payload["meta"])
            config = config_from_record(SACConfig, self.meta["config"])
            agent = SACAgent.create(0, self.meta["obs_dim"], self.meta["action_dim"], config)
            actor = flax.serialization.from_state_dict(agent.params["actor"], payload["actor"])
        except Exception as err:
            raise ValueError(f"{path} is not a readable qflow expert ({type(err).__name__}: {err}); retrain it "
                             f"with qflow expert train") from err
        self.path, self.sha256 = path, hashlib.sha256(raw).hexdigest()
        agent = agent.replace(params={**agent.params, "actor": actor})
        self._act = jax.jit(agent.mean_actions)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(self._act(np.asarray(obs, np.float32)))  # numpy in: no extra dispatch

    def record(self) -> dict:
        """What a dataset's metadata says about the expert that generated it."""
        keep = ("env", "env_steps", "seed", "config", "final_eval", "random_policy_eval")
        return {"path": str(self.path), "sha256": self.sha256, **{k: self.meta.get(k) for k in keep}}
