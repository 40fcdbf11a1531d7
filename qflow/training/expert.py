"""Train the goal-direction ant expert that antmaze datasets are generated with (OGBench's recipe).

OGBench's antmaze data comes from a SAC policy trained on ``online-ant-xy-v0``: the gymnasium ant
(``online-ant-v0``, 1,000-step episodes, terminated when the torso leaves the healthy height range)
wrapped by OGBench's ``GymXYWrapper``, which appends a unit direction z to the observation, redraws
z every 100 steps, and pays the displacement along z each step (``(xy' - xy) . z``). The data
generator later feeds the same 29-d observation (ant state without xy, plus the direction to the
maze oracle's subgoal) and takes the expert's deterministic action.

``qflow expert train --run-dir DIR`` runs SAC for ``--steps`` env steps (OGBench: 400k): uniform random
actions for the first ``--random-steps``, then one SAC update per env step through the online
fine-tuning step (``qflow.training.steps.make_online_step``: insert, update, next stochastic action),
as a job of the one loop (``qflow.training.loop``). Time-limit
truncations bootstrap (mask 1); only a fall (terminated) cuts the bootstrap.

Files in DIR: ``metrics.csv`` (losses, every --log-every steps), ``episodes.csv`` (one row per
training episode), ``eval.csv`` (deterministic-policy evaluation, every --eval-every steps: return and
speed along the commanded direction, against a uniform random policy measured once), ``expert.msgpack``
(the actor and what is needed to rebuild it; rewritten at every evaluation, final at the end),
``summary.json``. Resumable: every --checkpoint-every steps the online replay rows since the last
checkpoint go to ``replay/`` (one segment each) and ``expert_state.npz`` (the commit point) holds the
agent, counters and the list of segments; rerunning the command resumes from it with every collected
transition. A resumed run starts a fresh episode (the simulator state is not saved).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from qflow.agents.base import build_config
from qflow.agents.expert_policy import EXPERT_FILE, Expert, save_expert  # noqa: F401  (re-exported)
from qflow.agents.sac import SACAgent, SACConfig
from qflow.data.replay import KEYS, ReplayBuffer, load_segments, prune_segments, save_segment
from qflow.errors import TrainingDiverged
from qflow.training import loop
from qflow.training.record import RunRecord
from qflow.training.logs import CSVLog
from qflow.training.settings import ExpertSettings
from qflow.training.steps import make_online_step, unpack_transition, zero_sums
from qflow.utils import atomic_write_json, atomic_writer, package_versions

ENV_ID = "online-ant-xy-v0"
STATE = "expert_state.npz"
REPLAY_DIR = "replay"
DIRECTION_RESAMPLE = 100  # steps between direction redraws (OGBench's GymXYWrapper setting for the ant)


def make_ant_xy_env():
    """OGBench's ``online-ant-xy-v0``: ``online-ant-v0`` under ``GymXYWrapper`` (direction every 100 steps).

    The wrapper draws directions from NumPy's global generator: seed it (``np.random.seed``) first."""
    import gymnasium

    import ogbench.online_locomotion  # noqa: F401  (registers online-ant-v0)
    from ogbench.online_locomotion.wrappers import GymXYWrapper
    from qflow.utils import quiet_env_warnings

    quiet_env_warnings()
    return GymXYWrapper(gymnasium.make("online-ant-v0"), resample_interval=DIRECTION_RESAMPLE)


def run_episodes(env, policy, episodes: int, seed: int) -> dict:
    """Mean return, length and speed (m/s) along the commanded direction of ``policy(obs) -> action``."""
    dt = env.unwrapped.dt
    returns, lengths = [], []
    for i in range(episodes):
        np.random.seed((seed * 7_919 + i) % 2**32)
        obs, _ = env.reset(seed=seed * 100_003 + i)
        total, n, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total, n = total + float(reward), n + 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(n)
    return {"return": float(np.mean(returns)), "return_std": float(np.std(returns)),
            "length": float(np.mean(lengths)), "speed": float(np.sum(returns) / (np.sum(lengths) * dt)),
            "episodes": episodes}


# ---------------------------------------------------------------- training
def train_expert(run_dir: Path | str, settings: ExpertSettings = ExpertSettings(), progress: bool = True) -> dict:
    settings.validate()
    return loop.run(ExpertJob(Path(run_dir), settings), progress, unit="step")


class ExpertJob:
    """SAC on online-ant-xy-v0, one env step per ``advance`` (a ``loop.Job``)."""

    def __init__(self, run_dir: Path, settings: ExpertSettings):
        self.run_dir, self.settings = run_dir, settings
        self.total = settings.steps
        self.every = {"log": settings.log_every, "eval": settings.eval_every, "checkpoint": settings.checkpoint_every}
        self.desc = "SAC ant expert"
        self.started = time.time()
        self.last_eval, self.since_log, self.steps_timed = None, 0, 0

    def restore(self) -> int:
        s, run_dir = self.settings, self.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        config = build_config(SACConfig, s.preset, overrides=s.overrides)
        self.env = make_ant_xy_env()
        obs_dim, action_dim = self.env.observation_space.shape[0], self.env.action_space.shape[0]
        agent = SACAgent.create(s.seed, obs_dim, action_dim, config)
        empty = {k: np.zeros((0, *((obs_dim,) if "observations" in k else (action_dim,) if k == "actions" else ())),
                             np.float32) for k in KEYS}
        buffer = ReplayBuffer.create(empty, capacity=s.steps)
        self.record = {"env": ENV_ID, "settings": dataclasses.asdict(s), "config": config.as_dict(),
                       "obs_dim": obs_dim, "action_dim": action_dim, "versions": package_versions()}
        self.env_step, self.episodes, self.segments, rng = 0, 0, [], jax.random.PRNGKey(s.seed + 1)
        if (run_dir / STATE).exists():
            agent, rng, buffer = self._resume(agent, config, buffer)
        else:
            atomic_write_json(run_dir / "run.json", self.record)
        self._open_logs(action_dim)
        agent = jax.tree.map(lambda x: jnp.array(x, copy=True), agent)  # distinct buffers: they are donated
        self.carry = {"agent": agent, "buffer": buffer, "sums": zero_sums(agent, buffer), "rng": rng}
        self.step_fn = make_online_step(obs_dim, action_dim, 1, config.batch_size)
        self.insert_fn = jax.jit(lambda buf, packed: buf.insert(unpack_transition(packed, obs_dim, action_dim)),
                                 donate_argnums=0)
        self.saved_upto, self.action_dim = self.env_step, action_dim
        self.random_actions = np.random.default_rng([s.seed, self.env_step])
        np.random.seed((s.seed * 1_000_003 + self.env_step) % 2**32)  # the wrapper's directions
        obs, _ = self.env.reset(seed=s.seed * 1_000_003 + self.episodes)
        self.obs = np.asarray(obs, np.float32)
        self.action = self.random_actions.uniform(-1, 1, action_dim).astype(np.float32)
        self.ep_return, self.ep_len = 0.0, 0
        self.t_loop = time.perf_counter()
        return self.env_step

    def _resume(self, agent, config, buffer):
        path = self.run_dir / STATE
        try:
            with np.load(path) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                agent = flax.serialization.from_bytes(agent, bytes(z["agent"]))
                rng = jnp.asarray(z["rng"])
        except Exception as err:
            raise ValueError(f"unreadable expert checkpoint {path} ({type(err).__name__}: {err}); move it "
                             f"away to start over") from err
        was = {"agent": "sac", "steps": meta["record"]["settings"]["steps"], "config": meta["record"]["config"]}
        now = {"agent": "sac", "steps": self.settings.steps, "config": config.as_dict()}
        differ = RunRecord.differences(was, now, ("steps", "config"))
        if differ:
            raise ValueError(f"{self.run_dir} holds an expert run with other settings (differs in {', '.join(differ)}); "
                             f"rerun with the same options (see {self.run_dir / 'run.json'}) or pick another --run-dir")
        self.env_step, self.episodes = meta["env_step"], meta["episodes"]
        self.segments = [tuple(s) for s in meta["segments"]]
        start, rows = load_segments(self.run_dir / REPLAY_DIR, self.segments, self.env_step, buffer.online_capacity)
        print(f"[qflow] expert: resuming at env step {self.env_step} with {len(rows['observations'])} transitions")
        return agent, rng, buffer.with_rows(start, rows)

    def _open_logs(self, action_dim: int) -> None:
        s, run_dir = self.settings, self.run_dir
        self.metrics_log = CSVLog(run_dir / "metrics.csv", after_step=self.env_step)
        self.episode_log = CSVLog(run_dir / "episodes.csv", after_step=self.env_step)
        self.eval_log = CSVLog(run_dir / "eval.csv", after_step=self.env_step)
        path = run_dir / "random_policy_eval.json"
        if not path.exists():  # the bar the expert must clear, measured once with the same episodes
            action_rng = np.random.default_rng(s.seed)
            atomic_write_json(path, run_episodes(self.env, lambda _: action_rng.uniform(-1, 1, action_dim),
                                                 s.eval_episodes, seed=10_000))
        self.random_eval = json.loads(path.read_text())

    def advance(self, step: int) -> tuple[int, dict]:
        s = self.settings
        next_obs, reward, terminated, truncated, _ = self.env.step(self.action)
        next_obs = np.asarray(next_obs, np.float32)
        self.ep_return, self.ep_len = self.ep_return + float(reward), self.ep_len + 1
        if terminated or truncated:
            self.episodes += 1
            self.episode_log.write({"step": self.env_step + 1, "episode": self.episodes,
                                    "return": round(self.ep_return, 4), "length": self.ep_len})
            self.ep_return, self.ep_len = 0.0, 0
            act_obs = np.asarray(self.env.reset(seed=s.seed * 1_000_003 + self.episodes)[0], np.float32)
        else:
            act_obs = next_obs
        packed = np.concatenate([self.obs, self.action, [reward], next_obs, [0.0 if terminated else 1.0], act_obs],
                                dtype=np.float32)
        self.env_step += 1
        if self.env_step <= s.random_steps:
            self.carry["buffer"] = self.insert_fn(self.carry["buffer"], packed)
            self.action = self.random_actions.uniform(-1, 1, self.action_dim).astype(np.float32)
        else:
            self.carry, action = self.step_fn(self.carry, packed)
            self.action = np.asarray(action)
            self.since_log += 1
            self.steps_timed += 1
        self.obs = act_obs
        return self.env_step, {}

    def log(self, step: int, means: dict) -> None:
        if not self.since_log:  # no update yet (random phase)
            return
        sums = jax.device_get(self.carry["sums"])
        self.carry["sums"] = jax.tree.map(jnp.zeros_like, self.carry["sums"])
        means = {k: float(v) / self.since_log for k, v in sums.items()}
        if not all(np.isfinite(list(means.values()))):
            raise TrainingDiverged(f"SAC diverged at env step {step}: {means}; the last checkpoint is kept "
                                   f"in {self.run_dir}; retry in a new --run-dir with a lower --set lr=...")
        self.since_log = 0
        recent = [float(r["return"]) for r in self.episode_log.read()[-10:]]
        self.metrics_log.write({"step": step, **means, "episode_return_last10": np.mean(recent) if recent else "",
                                "wall_time": round(time.time() - self.started, 1)})

    def eval(self, step: int) -> None:
        policy = jax.jit(self.carry["agent"].mean_actions)
        result = run_episodes(self.env, lambda o: np.asarray(policy(jnp.asarray(o[None], jnp.float32)))[0],
                              self.settings.eval_episodes, seed=10_000)
        self.eval_log.write({"env_step": step, "step": step, **result,
                             "wall_time": round(time.time() - self.started, 1)})
        save_expert(self.run_dir / EXPERT_FILE, self.carry["agent"],
                    {**self.record, "env_steps": step, "seed": self.settings.seed, "final_eval": result,
                     "random_policy_eval": self.random_eval})
        self.last_eval = result

    def checkpoint(self, step: int) -> None:
        written = save_segment(self.run_dir / REPLAY_DIR, self.carry["buffer"], self.saved_upto)
        if written:
            self.segments.append(written)
        self.saved_upto = step
        meta = {"env_step": step, "episodes": self.episodes, "segments": self.segments, "record": self.record}
        with atomic_writer(self.run_dir / STATE) as f:
            np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                     agent=np.frombuffer(flax.serialization.to_bytes(self.carry["agent"]), np.uint8),
                     rng=np.asarray(jax.device_get(self.carry["rng"])))
        prune_segments(self.run_dir / REPLAY_DIR, self.segments)

    def finish(self, step: int, stop: str) -> dict:
        loop_s = time.perf_counter() - self.t_loop
        last_eval = self.last_eval or {k: float(v) for k, v in self.eval_log.read()[-1].items()}
        summary = {"env": ENV_ID, "env_steps": step, "episodes": self.episodes, "final_eval": last_eval,
                   "random_policy_eval": self.random_eval,
                   "wall_time_s_this_process": round(time.time() - self.started, 1),
                   "env_steps_per_s_this_process": round(self.steps_timed / loop_s, 1) if self.steps_timed else None,
                   "expert": str(self.run_dir / EXPERT_FILE), **self.record}
        atomic_write_json(self.run_dir / "summary.json", summary)
        return summary
