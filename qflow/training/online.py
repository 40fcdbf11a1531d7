"""Online fine-tuning after offline training: the same agent, the same losses, more data.

``qflow train --online-steps N`` runs this job of the loop (``training.loop``) after the offline
``--steps`` (which may be 0). One seed.

Each environment step: act with the stochastic policy (``sample_actions`` with fresh noise), step the
single-task environment from ``make_env``, store the transition in the replay buffer (which starts as
the offline dataset, see ``qflow.data.replay``), and run ``--updates-per-step`` agent updates on
uniform batches from the whole buffer. Rewards and masks follow the offline loader's convention:
the reward is the env's step reward (OGBench single-task envs compute it, like the dataset relabel,
from the state before the action: ``success_timing='pre'``), ``mask = 1 - terminated`` (0 only at
task success); a time-limit truncation keeps mask 1 (it bootstraps) and resets the environment.

Speed: the buffer lives on the device; per env step two jitted calls with donated state do insert +
sample ``updates_per_step`` batches, then the updates + sample the next action; the host packs the
transition into one float32 vector, so an env step costs two dispatches and one device->host copy of
the action. Time spent stepping the env, in the jitted call (waiting for the action) and elsewhere
is measured and reported in summary.json under "online" and printed at the end.

Steps: the run's step counter continues past the offline steps, one step per env step
(``step = steps + env_step``); --eval-every, --log-every and --checkpoint-every count that total.
metrics.csv rows average the updates since the previous row; online.csv gets one row per finished
episode (step, env_step, episode, return, length, success).

Checkpoints (every --checkpoint-every total steps and at the end), in this order:
  1. ``replay/seg_A_B.npz``: the online transitions inserted since the previous checkpoint (inserts
     A..B-1). The offline part of the buffer is not saved: it is reloaded from the dataset file.
  2. ``online_state.npz`` (atomic): step, env step, episode count, action rng, the agent (flax msgpack
     bytes), the list of segments that make up the buffer. This file is the commit point.
  3. ``checkpoint.msgpack``: the same agent and step, for ``qflow eval`` and tooling.
  4. segments no longer needed (rows overwritten, or written by a run killed before step 2) are deleted.
A killed run resumes from ``online_state.npz`` with every transition collected up to it. The
environment's own state cannot be saved: a resumed run starts a fresh episode, and the episode that
was in progress is not logged (its transitions up to the checkpoint stay in the buffer).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from qflow.data.loading import make_env
from qflow.data.replay import ReplayBuffer, load_segments, prune_segments, save_segment
from qflow.evaluation.evaluate import Evaluator, act, evaluate_policy
from qflow.training import checkpoint, record
from qflow.training.logs import CSVLog, drop_stale_summaries, resumed_clock
from qflow.training.loop import check_finite
from qflow.training.steps import make_online_step, zero_sums
from qflow.utils import atomic_writer

STATE = "online_state.npz"
REPLAY_DIR = "replay"
ONLINE_LOG = "online.csv"
TIMERS = ("env_s", "agent_s", "other_s", "compile_s", "eval_s", "checkpoint_s")


class OnlineJob:
    """Online fine-tuning of one agent, one env step per ``advance`` (a ``loop.Job``).

    ``resuming`` says whether an online checkpoint exists (the offline job is then skipped); the
    trainer sets ``agents`` (stacked, one seed) before the loop starts."""

    def __init__(self, args, run_dir: Path, agents, device_data: dict, sinks):
        self.args, self.run_dir, self.agents, self.data, self.sinks = args, Path(run_dir), agents, device_data, sinks
        self.state = read_state(self.run_dir, args.steps)
        self.resuming = self.state is not None
        self.total = args.steps + args.online_steps
        self.every = {"log": args.log_every, "eval": args.eval_every, "checkpoint": args.checkpoint_every}
        self.desc = f"{args.agent} {args.env} online"
        self.seed = args.seeds[0]
        self.evaluator, self.since_log, self.untimed = None, 0, 0.0

    # ------------------------------------------------------------------ resume
    def restore(self) -> int:
        meta = self.state["meta"] if self.state else {}
        step = int(meta.get("step", self.args.steps))
        agent = self._restored_agent() if self.state else jax.tree.map(lambda x: jnp.array(x[0], copy=True),
                                                                        self.agents)  # distinct: donated
        self.env = make_env(self.args.env)
        buffer = self._buffer(meta)
        self.env_step, self.episodes = int(meta.get("env_step", 0)), int(meta.get("episodes", 0))
        self.segments = [tuple(s) for s in meta.get("segments", [])]
        self.timing = {k: float(meta.get("timing", {}).get(k, 0.0)) for k in TIMERS}
        self.timed_steps = int(meta.get("timing", {}).get("timed_steps", 0))
        self.saved_upto = self.env_step
        if self.state:
            start, rows = load_segments(self.run_dir / REPLAY_DIR, self.segments, self.env_step,
                                        buffer.online_capacity)
            buffer = buffer.with_rows(start, rows)
            rng = jnp.asarray(self.state["rng"])
            print(f"[qflow] online: resuming at env step {self.env_step} with {len(rows['observations'])} online "
                  f"transitions restored; the episode in progress was lost, starting a fresh one")
        else:
            rng = jax.random.fold_in(jax.random.PRNGKey(self.seed), 0x0511E)
        if self.env_step > self.args.online_steps:  # never relabel a longer run as a shorter one
            raise record.CheckpointError(
                f"{self.run_dir} already holds {self.env_step:,} online env steps, more than --online-steps "
                f"{self.args.online_steps:,}; pass --online-steps {self.env_step:,} or more, or another --run-dir")
        if self.state and step < self.total:
            drop_stale_summaries([self.run_dir])
        self._open_logs(step)
        self.carry = {"agent": agent, "buffer": buffer, "sums": zero_sums(agent, buffer), "rng": rng}
        self.step_fn = make_online_step(self.obs_dim, self.action_dim, self.args.updates_per_step,
                                        agent.config.batch_size)
        self._first_action()
        return step

    def _restored_agent(self):
        try:
            return flax.serialization.from_bytes(jax.tree.map(lambda x: x[0], self.agents), self.state["agent"])
        except Exception as err:
            raise record.CheckpointError(
                f"unreadable agent in {self.run_dir / STATE} ({type(err).__name__}: {err}); move it away to "
                f"restart the online phase") from err

    def _buffer(self, meta: dict) -> ReplayBuffer:
        """The replay buffer, starting as the offline dataset (whose device copy is then released)."""
        self.obs_dim, self.action_dim = self.data["observations"].shape[1], self.data["actions"].shape[1]
        space = (self.env.observation_space.shape, self.env.action_space.shape)
        if space != ((self.obs_dim,), (self.action_dim,)):
            raise ValueError(f"{self.args.env} has observations {space[0]} and actions {space[1]}, the dataset "
                             f"({self.obs_dim}, {self.action_dim})")
        buffer = ReplayBuffer.create(self.data, self.args.buffer_size, self.args.online_steps)
        self.data.clear()
        if meta and meta["offline_size"] != buffer.offline_size:
            raise record.CheckpointError(
                f"{self.run_dir} was fine-tuned on a dataset of {meta['offline_size']} transitions, this one has "
                f"{buffer.offline_size}; pass the same --dataset-episodes or another --run-dir")
        return buffer

    def _open_logs(self, step: int) -> None:
        self.metrics_log = CSVLog(self.run_dir / "metrics.csv", after_step=step)
        self.eval_log = CSVLog(self.run_dir / "eval.csv", after_step=step)
        self.online_log = CSVLog(self.run_dir / ONLINE_LOG, after_step=step)
        self.started = resumed_clock([self.metrics_log, self.eval_log])
        self.recent = [(float(r["return"]), float(r["success"])) for r in self.online_log.read()][-100:]

    def _reset(self) -> np.ndarray:
        ob, _ = self.env.reset(seed=(self.seed + 1) * 1_000_003 + self.episodes)
        return np.asarray(ob, np.float32)

    def _first_action(self) -> None:
        self.obs = self._reset()
        self.carry["rng"], key = jax.random.split(self.carry["rng"])
        self.action = np.asarray(act(self.carry["agent"], self.obs[None], key))[0]
        self.ep_return, self.ep_len, self.first, self.mark = 0.0, 0, True, None

    # ------------------------------------------------------------------ one env step
    def advance(self, step: int) -> tuple[int, dict]:
        t0 = time.perf_counter()
        if self.mark is not None:  # the rest of the previous iteration, eval and checkpoints excepted
            self.timing["other_s"] += t0 - self.mark - self.untimed
        self.untimed = 0.0
        next_obs, reward, terminated, truncated, info = self.env.step(self.action)
        next_obs = np.asarray(next_obs, np.float32)
        self.ep_return += float(reward)
        self.ep_len += 1
        done = bool(terminated or truncated)
        act_obs = self._reset_after(info) if done else next_obs
        packed = np.concatenate([self.obs, self.action, [reward], next_obs, [0.0 if terminated else 1.0], act_obs],
                                dtype=np.float32)
        t1 = time.perf_counter()
        self.carry, action = self.step_fn(self.carry, packed)
        self.action = np.asarray(action)
        t2 = time.perf_counter()
        if self.first:  # the first call compiles
            self.timing["compile_s"] += t2 - t1
            self.first = False
        else:
            self.timing["env_s"] += t1 - t0
            self.timing["agent_s"] += t2 - t1
            self.timed_steps += 1
            self.mark = t2
        self.obs = act_obs
        self.env_step += 1
        self.since_log += 1
        if done:
            self._log_episode(step + 1)
        return step + 1, {}

    def _reset_after(self, info: dict) -> np.ndarray:
        self.last_success = float(info.get("success", 0.0))
        ob = self._reset()  # seeded by the count of episodes before this one ends
        self.episodes += 1
        return ob

    def _log_episode(self, step: int) -> None:
        success = self.last_success
        self.online_log.write({"step": step, "env_step": self.env_step, "episode": self.episodes,
                               "return": self.ep_return, "length": self.ep_len, "success": success,
                               "wall_time": round(time.time() - self.started, 2)})
        self.recent = (self.recent + [(self.ep_return, success)])[-100:]
        if self.sinks:
            self.sinks[0].add_scalar("online/return", self.ep_return, step)
            self.sinks[0].add_scalar("online/success", success, step)
        self.ep_return, self.ep_len = 0.0, 0

    # ------------------------------------------------------------------ events
    def log(self, step: int, means: dict) -> None:
        sums = jax.device_get(self.carry["sums"])
        self.carry["sums"] = jax.tree.map(jnp.zeros_like, self.carry["sums"])
        means = {k: float(v) / self.since_log for k, v in sums.items()}
        self.since_log = 0
        check_finite(means, step, [self.run_dir], losses=type(self.carry["agent"]).LOSSES)
        row = {"step": step, "wall_time": round(time.time() - self.started, 2), **means}
        self.metrics_log.write(row)
        if self.sinks:
            for k, v in row.items():
                self.sinks[0].add_scalar(f"train/{k}", v, step)

    def eval(self, step: int) -> None:
        te = time.perf_counter()
        args = self.args
        self.evaluator = self.evaluator or Evaluator(args.env, min(args.eval_envs, args.eval_episodes))
        result = evaluate_policy(self.evaluator, self.carry["agent"], self.seed, step, args.eval_episodes,
                                 desc=f"evaluating at step {step}" if args.progress else None)
        self.eval_log.write({"step": step, **result, "wall_time": round(time.time() - self.started, 2)})
        if self.sinks:
            self.sinks[0].add_scalar("eval/success", result["success"], step)
        self._untimed("eval_s", te)

    def _untimed(self, timer: str, since: float) -> None:
        spent = time.perf_counter() - since
        self.timing[timer] += spent
        self.untimed += spent

    def checkpoint(self, step: int) -> None:
        """Replay segment, then online_state.npz (the commit point), then checkpoint.msgpack; see above."""
        tc = time.perf_counter()
        buf = self.carry["buffer"]
        written = save_segment(self.run_dir / REPLAY_DIR, buf, self.saved_upto)
        if written:
            self.segments.append(written)
        self.saved_upto = self.env_step
        self.segments = [s for s in self.segments if s[1] > self.env_step - buf.online_capacity]
        meta = {"step": step, "offline_steps": self.args.steps, "env_step": self.env_step, "episodes": self.episodes,
                "offline_size": buf.offline_size, "capacity": buf.capacity, "segments": self.segments,
                "updates_per_step": self.args.updates_per_step,
                "timing": {**self.timing, "timed_steps": self.timed_steps}}
        payload = flax.serialization.to_bytes(self.carry["agent"])
        with atomic_writer(self.run_dir / STATE) as f:
            np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                     agent=np.frombuffer(payload, np.uint8), rng=np.asarray(jax.device_get(self.carry["rng"])))
        checkpoint.save(self.run_dir, self.carry["agent"], step)
        prune_segments(self.run_dir / REPLAY_DIR, self.segments)
        self._untimed("checkpoint_s", tc)

    def finish(self, step: int, stop: str) -> dict:
        """The summary's "online" entry."""
        buf, recent = self.carry["buffer"], self.recent
        report = {
            "env_steps": self.env_step, "online_steps": self.args.online_steps,
            "updates_per_step": self.args.updates_per_step, "episodes": self.episodes,
            "episode_return_last100": float(np.mean([r for r, _ in recent])) if recent else None,
            "episode_success_last100": float(np.mean([s for _, s in recent])) if recent else None,
            "buffer_capacity": buf.capacity, "buffer_rows": int(buf.size()), "offline_rows": buf.offline_size,
            "throughput": throughput(self.timing, self.timed_steps, self.args.updates_per_step),
        }
        t = report["throughput"]
        if t["env_steps_per_s"]:
            print(f"[qflow] online: {self.env_step} env steps, {self.episodes} episodes; {t['env_steps_per_s']:.1f} "
                  f"env steps/s with {self.args.updates_per_step} update(s) per step: env {t['share_env']:.0%}, "
                  f"jitted agent call {t['share_agent']:.0%}, other {t['share_other']:.0%} (ms per step: env "
                  f"{t['ms_env']:.2f}, agent {t['ms_agent']:.2f}, other {t['ms_other']:.2f}); excluded: compile "
                  f"{self.timing['compile_s']:.1f}s, eval {self.timing['eval_s']:.1f}s, checkpoints "
                  f"{self.timing['checkpoint_s']:.1f}s")
        return report


def read_state(run_dir: Path, offline_steps: int) -> dict | None:
    """The online checkpoint's meta, agent bytes and action rng, or None when there is none."""
    path = run_dir / STATE
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            state = {"meta": meta, "agent": bytes(z["agent"]), "rng": np.array(z["rng"])}
    except Exception as err:
        raise record.CheckpointError(
            f"unreadable online checkpoint {path} ({type(err).__name__}: {err}); move it away to restart "
            f"the online phase") from err
    if meta["offline_steps"] != offline_steps:
        raise record.CheckpointError(
            f"{run_dir} went online after {meta['offline_steps']} offline steps; pass --steps "
            f"{meta['offline_steps']} to resume it (or another --run-dir)")
    return state


def throughput(timing: dict, timed_steps: int, updates_per_step: int) -> dict:
    busy = timing["env_s"] + timing["agent_s"] + timing["other_s"]
    out = {"timed_steps": timed_steps, "env_steps_per_s": timed_steps / busy if busy > 0 else None,
           "updates_per_s": timed_steps * updates_per_step / busy if busy > 0 else None,
           **{k: round(v, 3) for k, v in timing.items()}}
    for name in ("env", "agent", "other"):
        out[f"share_{name}"] = timing[f"{name}_s"] / busy if busy > 0 else None
        out[f"ms_{name}"] = 1000 * timing[f"{name}_s"] / timed_steps if timed_steps else None
    return out


def read_checkpoint(run_dir: Path) -> tuple[dict, dict]:
    """(meta, online rows oldest first) of a run's online checkpoint, without the agent: for tests and tools."""
    run_dir = Path(run_dir)
    with np.load(run_dir / STATE) as z:
        meta = json.loads(bytes(z["meta"]).decode())
    _, rows = load_segments(run_dir / REPLAY_DIR, meta["segments"], meta["env_step"],
                            meta["capacity"] - meta["offline_size"])
    return meta, rows
