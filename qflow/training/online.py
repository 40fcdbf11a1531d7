"""Online fine-tuning after offline training: the same agent, the same losses, more data.

``qflow train --online-steps N`` runs this after the offline ``--steps`` (which may be 0). One seed.

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

import functools
import json
import time
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from qflow.data.loading import make_env
from qflow.data.replay import ReplayBuffer, load_segments, prune_segments, save_segment
from qflow.training import checkpoint
from qflow.training.logs import CSVLog
from qflow.utils import atomic_writer

STATE = "online_state.npz"
REPLAY_DIR = "replay"
ONLINE_LOG = "online.csv"
TIMERS = ("env_s", "agent_s", "other_s", "compile_s", "eval_s", "checkpoint_s")


@functools.lru_cache(maxsize=8)  # one compiled function per shape, shared by runs in one process
def make_online_step(obs_dim: int, action_dim: int, updates_per_step: int, batch_size: int):
    """(carry, packed transition) -> (carry, next action), by two jitted calls with donated state.

    carry = {"agent", "buffer", "sums" (metric sums since the last log), "rng" (action and batch noise)};
    packed = [obs, action, reward, next_obs, mask, obs_to_act_on] as one float32 vector.
    The buffer is written and sampled in its own call: in one program with the update, XLA copied the
    whole donated buffer every step (93 ms instead of 23 ms per SAC step at 400k rows, measured)."""

    def store_and_sample(buffer, packed, rng):
        buffer = buffer.insert(unpack_transition(packed, obs_dim, action_dim))
        keys = jax.random.split(jax.random.fold_in(rng, 1), updates_per_step)
        return buffer, jax.vmap(lambda k: buffer.sample(k, batch_size))(keys)

    def learn_and_act(state, batches, act_obs):
        agent, infos = jax.lax.scan(lambda ag, batch: ag.update(batch), state["agent"], batches)
        sums = jax.tree.map(lambda s, x: s + x.mean(), state["sums"], infos)
        rng, key = jax.random.split(state["rng"])
        action = agent.sample_actions(act_obs[None], key)[0]
        return {"agent": agent, "sums": sums, "rng": rng}, action

    store_and_sample = jax.jit(store_and_sample, donate_argnums=0)
    learn_and_act = jax.jit(learn_and_act, donate_argnums=0)

    def step(carry, packed):
        buffer, batches = store_and_sample(carry["buffer"], packed, carry["rng"])
        state, action = learn_and_act({k: carry[k] for k in ("agent", "sums", "rng")}, batches,
                                      packed[2 * obs_dim + action_dim + 2:])
        return {**state, "buffer": buffer}, action

    return step


def unpack_transition(packed, d: int, a: int) -> dict:
    """The replay row in ``packed`` = [obs (d), action (a), reward, next_obs (d), mask, ...]."""
    return {"observations": packed[:d], "actions": packed[d:d + a], "rewards": packed[d + a],
            "next_observations": packed[d + a + 1:2 * d + a + 1], "masks": packed[2 * d + a + 1]}


def zero_sums(agent, buffer):
    shapes = jax.eval_shape(lambda ag, bu: ag.update(bu.sample(jax.random.PRNGKey(0), ag.config.batch_size))[1],
                            agent, buffer)
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


class OnlinePhase:
    """The trainer's hook: ``restore`` before logs are opened, ``run`` after the offline loop."""

    def __init__(self, args, run_dir: Path):
        self.args = args
        self.run_dir = Path(run_dir)
        self.state = self._read_state()

    def _read_state(self):
        path = self.run_dir / STATE
        if not path.exists():
            return None
        try:
            with np.load(path) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                state = {"meta": meta, "agent": bytes(z["agent"]), "rng": np.array(z["rng"])}
        except Exception as err:
            raise checkpoint.CheckpointError(
                f"unreadable online checkpoint {path} ({type(err).__name__}: {err}); move it away to restart "
                f"the online phase") from err
        if meta["offline_steps"] != self.args.steps:
            raise checkpoint.CheckpointError(
                f"{self.run_dir} went online after {meta['offline_steps']} offline steps; pass --steps "
                f"{meta['offline_steps']} to resume it (or another --run-dir)")
        return state

    def restore(self, agents, step: int):
        """(stacked agents, step) to resume from: the online checkpoint's when there is one."""
        if self.state is None:
            return agents, step
        from qflow.training.trainer import stack

        template = jax.tree.map(lambda x: x[0], agents)
        try:
            agent = flax.serialization.from_bytes(template, self.state["agent"])
        except Exception as err:
            raise checkpoint.CheckpointError(
                f"unreadable agent in {self.run_dir / STATE} ({type(err).__name__}: {err}); move it away to "
                f"restart the online phase") from err
        return stack([agent]), int(self.state["meta"]["step"])

    # ------------------------------------------------------------------ the loop
    def run(self, agents, step: int, device_data: dict, metrics_log, eval_log, tb, started: float) -> dict:
        """Fine-tune from ``step`` to ``steps + online_steps``; returns the summary's "online" entry.

        ``device_data`` (the offline dataset on the device) is copied into the buffer and then cleared,
        so the caller's dict stops holding the arrays."""
        from tqdm import tqdm

        from qflow.evaluation.evaluate import act, evaluate_policy
        from qflow.training.schedule import Schedule
        from qflow.training.trainer import check_finite, make_evaluator

        args, run_dir = self.args, self.run_dir
        seed = args.seeds[0]
        total = args.steps + args.online_steps
        schedule = Schedule(total, {"log": args.log_every, "eval": args.eval_every, "checkpoint": args.checkpoint_every})
        agent = jax.tree.map(lambda x: jnp.array(x[0], copy=True), agents)  # distinct buffers: they are donated
        obs_dim, action_dim = device_data["observations"].shape[1], device_data["actions"].shape[1]
        env = make_env(args.env)
        if env.observation_space.shape != (obs_dim,) or env.action_space.shape != (action_dim,):
            raise ValueError(f"{args.env} has observations {env.observation_space.shape} and actions "
                             f"{env.action_space.shape}, the dataset ({obs_dim}, {action_dim})")

        buffer = ReplayBuffer.create(device_data, args.buffer_size, args.online_steps)
        device_data.clear()
        meta = self.state["meta"] if self.state else {}
        env_step = int(meta.get("env_step", 0))
        episodes = int(meta.get("episodes", 0))
        segments = [tuple(s) for s in meta.get("segments", [])]
        timing = {k: float(meta.get("timing", {}).get(k, 0.0)) for k in TIMERS}
        timed_steps = int(meta.get("timing", {}).get("timed_steps", 0))
        if self.state:
            if meta["offline_size"] != buffer.offline_size:
                raise checkpoint.CheckpointError(
                    f"{run_dir} was fine-tuned on a dataset of {meta['offline_size']} transitions, this one has "
                    f"{buffer.offline_size}; pass the same --dataset-episodes or another --run-dir")
            start, rows = load_segments(run_dir / REPLAY_DIR, segments, env_step, buffer.online_capacity)
            buffer = buffer.with_rows(start, rows)
            rng = jnp.asarray(self.state["rng"])
            print(f"[qflow] online: resuming at env step {env_step} with {len(rows['observations'])} online "
                  f"transitions restored; the episode in progress was lost, starting a fresh one")
        else:
            rng = jax.random.fold_in(jax.random.PRNGKey(seed), 0x0511E)
        saved_upto = env_step
        online_log = CSVLog(run_dir / ONLINE_LOG, after_step=step)
        recent = [(float(r["return"]), float(r["success"])) for r in online_log.read()][-100:]

        carry = {"agent": agent, "buffer": buffer, "sums": zero_sums(agent, buffer), "rng": rng}
        step_fn = make_online_step(obs_dim, action_dim, args.updates_per_step, agent.config.batch_size)
        evaluator = None
        since_log = 0

        def reset():
            ob, _ = env.reset(seed=(seed + 1) * 1_000_003 + episodes)
            return np.asarray(ob, np.float32)

        def save():
            nonlocal saved_upto, segments
            buf = carry["buffer"]
            written = save_segment(run_dir / REPLAY_DIR, buf, saved_upto)
            if written:
                segments.append(written)
            saved_upto = env_step
            segments = [s for s in segments if s[1] > env_step - buf.online_capacity]
            state_meta = {
                "step": step, "offline_steps": args.steps, "env_step": env_step, "episodes": episodes,
                "offline_size": buf.offline_size, "capacity": buf.capacity, "segments": segments,
                "updates_per_step": args.updates_per_step,
                "timing": {**timing, "timed_steps": timed_steps},
            }
            payload = flax.serialization.to_bytes(carry["agent"])
            with atomic_writer(run_dir / STATE) as f:
                np.savez(f, meta=np.frombuffer(json.dumps(state_meta).encode(), np.uint8),
                         agent=np.frombuffer(payload, np.uint8), rng=np.asarray(jax.device_get(carry["rng"])))
            checkpoint.save(run_dir, carry["agent"], step)
            prune_segments(run_dir / REPLAY_DIR, segments)

        bar = tqdm(total=args.online_steps, initial=env_step, unit="env step", disable=not args.progress,
                   dynamic_ncols=True, desc=f"{args.agent} {args.env} online")
        obs = reset()
        carry["rng"], key = jax.random.split(carry["rng"])
        action = np.asarray(act(carry["agent"], obs[None], key))[0]
        ep_return, ep_len = 0.0, 0
        first = True
        while env_step < args.online_steps:
            untimed = 0.0  # eval and checkpoint time in this iteration
            t0 = time.perf_counter()
            next_obs, reward, terminated, truncated, info = env.step(action)
            next_obs = np.asarray(next_obs, np.float32)
            ep_return += float(reward)
            ep_len += 1
            done = bool(terminated or truncated)
            act_obs = reset() if done else next_obs
            packed = np.concatenate([obs, action, [reward], next_obs, [0.0 if terminated else 1.0], act_obs],
                                    dtype=np.float32)
            t1 = time.perf_counter()
            carry, action_dev = step_fn(carry, packed)
            action = np.asarray(action_dev)
            t2 = time.perf_counter()
            timed = not first
            if first:  # the first call compiles
                timing["compile_s"] += t2 - t1
                first = False
            else:
                timing["env_s"] += t1 - t0
                timing["agent_s"] += t2 - t1
                timed_steps += 1
            obs = act_obs
            env_step += 1
            step += 1
            since_log += 1
            bar.update(1)

            if done:
                episodes += 1
                success = float(info.get("success", 0.0))
                online_log.write({"step": step, "env_step": env_step, "episode": episodes, "return": ep_return,
                                  "length": ep_len, "success": success,
                                  "wall_time": round(time.time() - started, 2)})
                recent = (recent + [(ep_return, success)])[-100:]
                if tb:
                    tb[0].add_scalar("online/return", ep_return, step)
                    tb[0].add_scalar("online/success", success, step)
                ep_return, ep_len = 0.0, 0
            due = schedule.due(step)
            if "log" in due:
                sums = jax.device_get(carry["sums"])
                carry["sums"] = jax.tree.map(jnp.zeros_like, carry["sums"])
                means = {k: float(v) / since_log for k, v in sums.items()}
                since_log = 0
                check_finite(means, step, [run_dir])
                row = {"step": step, "wall_time": round(time.time() - started, 2), **means}
                metrics_log.write(row)
                if tb:
                    for k, v in row.items():
                        tb[0].add_scalar(f"train/{k}", v, step)
                bar.set_postfix(episodes=episodes, success=f"{np.mean([s for _, s in recent]):.2f}"
                                if recent else "-")
            if "eval" in due:
                te = time.perf_counter()
                evaluator = evaluator or make_evaluator(args)
                result = evaluate_policy(evaluator, carry["agent"], seed, step, args.eval_episodes)
                eval_log.write({"step": step, **result, "wall_time": round(time.time() - started, 2)})
                if tb:
                    tb[0].add_scalar("eval/success", result["success"], step)
                timing["eval_s"] += time.perf_counter() - te
                untimed += time.perf_counter() - te
            if "checkpoint" in due:
                tc = time.perf_counter()
                save()
                timing["checkpoint_s"] += time.perf_counter() - tc
                untimed += time.perf_counter() - tc
            if timed:  # the rest of this iteration: bookkeeping, logging, episode ends
                timing["other_s"] += time.perf_counter() - t2 - untimed
        bar.close()

        buf = carry["buffer"]
        report = {
            "env_steps": env_step, "online_steps": args.online_steps, "updates_per_step": args.updates_per_step,
            "episodes": episodes,
            "episode_return_last100": float(np.mean([r for r, _ in recent])) if recent else None,
            "episode_success_last100": float(np.mean([s for _, s in recent])) if recent else None,
            "buffer_capacity": buf.capacity, "buffer_rows": int(buf.size()), "offline_rows": buf.offline_size,
            "throughput": throughput(timing, timed_steps, args.updates_per_step),
        }
        t = report["throughput"]
        if t["env_steps_per_s"]:
            print(f"[qflow] online: {env_step} env steps, {episodes} episodes; {t['env_steps_per_s']:.1f} env "
                  f"steps/s with {args.updates_per_step} update(s) per step: env {t['share_env']:.0%}, jitted "
                  f"agent call {t['share_agent']:.0%}, other {t['share_other']:.0%} (ms per step: env "
                  f"{t['ms_env']:.2f}, agent {t['ms_agent']:.2f}, other {t['ms_other']:.2f}); excluded: "
                  f"compile {timing['compile_s']:.1f}s, eval {timing['eval_s']:.1f}s, checkpoints "
                  f"{timing['checkpoint_s']:.1f}s")
        return report


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
