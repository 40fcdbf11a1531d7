"""Train the goal-direction ant expert that antmaze datasets are generated with (OGBench's recipe).

OGBench's antmaze data comes from a SAC policy trained on ``online-ant-xy-v0``: the gymnasium ant
(``online-ant-v0``, 1,000-step episodes, terminated when the torso leaves the healthy height range)
wrapped by OGBench's ``GymXYWrapper``, which appends a unit direction z to the observation, redraws
z every 100 steps, and pays the displacement along z each step (``(xy' - xy) . z``). The data
generator later feeds the same 29-d observation (ant state without xy, plus the direction to the
maze oracle's subgoal) and takes the expert's deterministic action.

``qflow expert train --run-dir DIR`` runs SAC for ``--steps`` env steps (OGBench: 400k): uniform random
actions for the first ``--random-steps``, then one SAC update per env step through the online
fine-tuning step (``qflow.training.online.make_online_step``: insert, update, next stochastic action). Time-limit
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
from qflow.training.logs import CSVLog
from qflow.training.online import make_online_step, unpack_transition, zero_sums
from qflow.training.schedule import Schedule
from qflow.utils import atomic_write_json, atomic_writer, package_versions

ENV_ID = "online-ant-xy-v0"
STATE = "expert_state.npz"
REPLAY_DIR = "replay"
DIRECTION_RESAMPLE = 100  # steps between direction redraws (OGBench's GymXYWrapper setting for the ant)


@dataclasses.dataclass(frozen=True)
class ExpertSettings:
    steps: int = 400_000  # env steps, one SAC update each after the random phase (OGBench: 400k)
    random_steps: int = 10_000  # uniform random actions first (OGBench's seed_steps)
    seed: int = 0
    preset: str = "tiny"  # 2x256 actor and critics: trains on a CPU in about an hour
    overrides: tuple = ("target_entropy_scale=-0.5",)  # --set KEY=VALUE on SACConfig; -0.5|A| as OGBench's SACs
    eval_every: int = 50_000
    eval_episodes: int = 10  # deterministic-policy episodes per evaluation (1,000 steps each)
    log_every: int = 5_000
    checkpoint_every: int = 25_000

    def validate(self) -> None:
        if self.steps < 1 or self.random_steps < 0:
            raise ValueError(f"--steps must be >= 1 and --random-steps >= 0, got {self.steps}, {self.random_steps}")
        for name in ("eval_every", "eval_episodes", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")


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
    from tqdm import tqdm

    settings.validate()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    schedule = Schedule(settings.steps, {"log": settings.log_every, "eval": settings.eval_every,
                                         "checkpoint": settings.checkpoint_every})
    started = time.time()
    config = build_config(SACConfig, settings.preset, overrides=settings.overrides)
    env = make_ant_xy_env()
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    agent = SACAgent.create(settings.seed, obs_dim, action_dim, config)
    empty = {k: np.zeros((0, *((obs_dim,) if "observations" in k else (action_dim,) if k == "actions" else ())),
                         np.float32) for k in KEYS}
    buffer = ReplayBuffer.create(empty, capacity=settings.steps)
    run_record = {"env": ENV_ID, "settings": dataclasses.asdict(settings), "config": config.as_dict(),
                  "obs_dim": obs_dim, "action_dim": action_dim, "versions": package_versions()}

    state_path = run_dir / STATE
    env_step, episodes, segments, rng = 0, 0, [], jax.random.PRNGKey(settings.seed + 1)
    if state_path.exists():
        try:
            with np.load(state_path) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                agent = flax.serialization.from_bytes(agent, bytes(z["agent"]))
                rng = jnp.asarray(z["rng"])
        except Exception as err:
            raise ValueError(f"unreadable expert checkpoint {state_path} ({type(err).__name__}: {err}); move it "
                             f"away to start over") from err
        same = json.loads(json.dumps([settings.steps, config.as_dict()]))  # as stored (tuples become lists)
        if [meta["record"]["settings"]["steps"], meta["record"]["config"]] != same:
            raise ValueError(f"{run_dir} holds an expert run with other settings; rerun with the same options "
                             f"(see {run_dir / 'run.json'}) or pick another --run-dir")
        env_step, episodes, segments = meta["env_step"], meta["episodes"], [tuple(s) for s in meta["segments"]]
        start, rows = load_segments(run_dir / REPLAY_DIR, segments, env_step, buffer.online_capacity)
        buffer = buffer.with_rows(start, rows)
        print(f"[qflow] expert: resuming at env step {env_step} with {len(rows['observations'])} transitions")
    else:
        atomic_write_json(run_dir / "run.json", run_record)

    metrics_log = CSVLog(run_dir / "metrics.csv", after_step=env_step)
    episode_log = CSVLog(run_dir / "episodes.csv", after_step=env_step)
    eval_log = CSVLog(run_dir / "eval.csv", after_step=env_step)
    random_eval_path = run_dir / "random_policy_eval.json"
    if not random_eval_path.exists():  # the bar the expert must clear, measured once with the same episodes
        action_rng = np.random.default_rng(settings.seed)
        random_eval = run_episodes(env, lambda _: action_rng.uniform(-1, 1, action_dim), settings.eval_episodes,
                                   seed=10_000)
        atomic_write_json(random_eval_path, random_eval)
    random_eval = json.loads(random_eval_path.read_text())

    agent = jax.tree.map(lambda x: jnp.array(x, copy=True), agent)  # distinct buffers: they are donated
    carry = {"agent": agent, "buffer": buffer, "sums": zero_sums(agent, buffer), "rng": rng}
    step_fn = make_online_step(obs_dim, action_dim, 1, config.batch_size)
    insert_fn = jax.jit(lambda buf, packed: buf.insert(unpack_transition(packed, obs_dim, action_dim)),
                        donate_argnums=0)
    saved_upto, since_log, last_eval = env_step, 0, None
    random_actions = np.random.default_rng([settings.seed, env_step])

    def save():
        nonlocal saved_upto, segments
        written = save_segment(run_dir / REPLAY_DIR, carry["buffer"], saved_upto)
        if written:
            segments.append(written)
        saved_upto = env_step
        meta = {"env_step": env_step, "episodes": episodes, "segments": segments, "record": run_record}
        with atomic_writer(state_path) as f:
            np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                     agent=np.frombuffer(flax.serialization.to_bytes(carry["agent"]), np.uint8),
                     rng=np.asarray(jax.device_get(carry["rng"])))
        prune_segments(run_dir / REPLAY_DIR, segments)

    def evaluate():
        policy = jax.jit(carry["agent"].mean_actions)
        result = run_episodes(env, lambda o: np.asarray(policy(jnp.asarray(o[None], jnp.float32)))[0],
                              settings.eval_episodes, seed=10_000)
        eval_log.write({"env_step": env_step, "step": env_step, **result,
                        "wall_time": round(time.time() - started, 1)})
        save_expert(run_dir / EXPERT_FILE, carry["agent"],
                    {**run_record, "env_steps": env_step, "seed": settings.seed, "final_eval": result,
                     "random_policy_eval": random_eval})
        return result

    np.random.seed((settings.seed * 1_000_003 + env_step) % 2**32)  # the wrapper's directions
    obs, _ = env.reset(seed=settings.seed * 1_000_003 + episodes)
    obs = np.asarray(obs, np.float32)
    action = random_actions.uniform(-1, 1, action_dim).astype(np.float32)
    ep_return, ep_len = 0.0, 0
    bar = tqdm(total=settings.steps, initial=env_step, unit="step", disable=not progress, dynamic_ncols=True,
               desc="SAC ant expert")
    t_loop = time.perf_counter()
    steps_timed = 0
    while env_step < settings.steps:
        next_obs, reward, terminated, truncated, _ = env.step(action)
        next_obs = np.asarray(next_obs, np.float32)
        ep_return, ep_len = ep_return + float(reward), ep_len + 1
        done = terminated or truncated
        if done:
            episodes += 1
            episode_log.write({"step": env_step + 1, "episode": episodes, "return": round(ep_return, 4),
                               "length": ep_len})
            ep_return, ep_len = 0.0, 0
            act_obs = np.asarray(env.reset(seed=settings.seed * 1_000_003 + episodes)[0], np.float32)
        else:
            act_obs = next_obs
        packed = np.concatenate([obs, action, [reward], next_obs, [0.0 if terminated else 1.0], act_obs],
                                dtype=np.float32)
        env_step += 1
        if env_step <= settings.random_steps:
            carry["buffer"] = insert_fn(carry["buffer"], packed)
            action = random_actions.uniform(-1, 1, action_dim).astype(np.float32)
        else:
            carry, action_dev = step_fn(carry, packed)
            action = np.asarray(action_dev)
            since_log += 1
            steps_timed += 1
        obs = act_obs
        bar.update(1)
        due = schedule.due(env_step)
        if since_log and "log" in due:
            sums = jax.device_get(carry["sums"])
            carry["sums"] = jax.tree.map(jnp.zeros_like, carry["sums"])
            means = {k: float(v) / since_log for k, v in sums.items()}
            if not all(np.isfinite(list(means.values()))):
                raise TrainingDiverged(f"SAC diverged at env step {env_step}: {means}; the last checkpoint is kept "
                                       f"in {run_dir}; retry in a new --run-dir with a lower --set lr=...")
            since_log = 0
            recent = [float(r["return"]) for r in episode_log.read()[-10:]]
            metrics_log.write({"step": env_step, **means, "episode_return_last10": np.mean(recent) if recent else "",
                               "wall_time": round(time.time() - started, 1)})
            bar.set_postfix(ret=f"{np.mean(recent):.1f}" if recent else "-", alpha=f"{means['alpha']:.3f}")
        if "eval" in due:
            last_eval = evaluate()
        if "checkpoint" in due:
            save()
    bar.close()
    loop_s = time.perf_counter() - t_loop
    if last_eval is None:
        last_eval = {k: float(v) for k, v in eval_log.read()[-1].items()}
    summary = {"env": ENV_ID, "env_steps": env_step, "episodes": episodes, "final_eval": last_eval,
               "random_policy_eval": random_eval, "wall_time_s_this_process": round(time.time() - started, 1),
               "env_steps_per_s_this_process": round(steps_timed / loop_s, 1) if steps_timed else None,
               "expert": str(run_dir / EXPERT_FILE), **run_record}
    atomic_write_json(run_dir / "summary.json", summary)
    return summary

