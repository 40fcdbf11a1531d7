"""Replay buffer for online fine-tuning: the offline dataset followed by a circular online region.

Layout (``capacity`` rows, all on the device as float32 jax arrays)::

    [0, offline_size)            the offline dataset, never overwritten
    [offline_size, capacity)     online transitions; insert number i goes to row offline_size + i % online_capacity

Offline rows are protected on purpose: they are the prior data the fine-tuning starts from and the
only rows the checkpoint does not store (they are reloaded from the dataset file). When the online
region is full the oldest online row is overwritten. The default capacity (offline size + online
steps) never overwrites anything. Batches are drawn uniformly over the rows filled so far.

The buffer is an immutable pytree: ``insert`` and ``sample`` are jittable and meant to run inside
one jitted, donated call per environment step, so an insert is an in-place row write, not a copy.

Persistence (``save_segment`` / ``load_segments``): each checkpoint writes only the online rows
inserted since the previous checkpoint, as one ``.npz`` segment written to a temporary file and
renamed into place; segments whose rows have all been overwritten are deleted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from qflow.utils import atomic_writer

KEYS = ("observations", "actions", "rewards", "next_observations", "masks")
SEGMENT = re.compile(r"^seg_(\d+)_(\d+)\.npz$")
SEGMENT_TEMP = re.compile(r"^\.seg_\d+_\d+\.npz\..+\.tmp$")  # a segment write killed before its rename


class ReplayBuffer(flax.struct.PyTreeNode):
    data: dict[str, Any]  # key -> [capacity, ...] float32
    count: Any  # int32 scalar: online transitions inserted so far (all time, including overwritten ones)
    offline_size: int = flax.struct.field(pytree_node=False)
    capacity: int = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, offline: dict, capacity: int | None = None, online_rows: int = 0) -> "ReplayBuffer":
        """Offline rows (numpy or jax arrays with the keys in KEYS) plus room for online rows.

        ``capacity`` None means offline size + ``online_rows`` (nothing is ever overwritten)."""
        missing = [k for k in KEYS if k not in offline]
        if missing:
            raise ValueError(f"replay buffer needs keys {missing}")
        n = int(offline["observations"].shape[0])
        capacity = n + online_rows if capacity is None else int(capacity)
        if capacity <= n:
            raise ValueError(f"--buffer-size must exceed the offline dataset ({n} transitions) to leave room for "
                             f"online transitions, got {capacity}; e.g. --buffer-size {n + max(online_rows, 1)}")
        data = {}
        for k in KEYS:
            x = jnp.asarray(offline[k], jnp.float32)
            data[k] = jnp.concatenate([x, jnp.zeros((capacity - n, *x.shape[1:]), jnp.float32)])
        return cls(data, jnp.zeros((), jnp.int32), n, capacity)

    @property
    def online_capacity(self) -> int:
        return self.capacity - self.offline_size

    def size(self):
        """Rows that hold data (jittable)."""
        return self.offline_size + jnp.minimum(self.count, self.online_capacity)

    def insert(self, row: dict) -> "ReplayBuffer":
        """Write one transition (dict of unbatched arrays) over the oldest online row (jittable)."""
        ptr = self.offline_size + self.count % self.online_capacity
        data = {k: self.data[k].at[ptr].set(jnp.asarray(row[k], jnp.float32)) for k in KEYS}
        return self.replace(data=data, count=self.count + 1)

    def sample(self, key, batch_size: int) -> dict:
        """Uniform batch over the filled rows (jittable)."""
        idx = jax.random.randint(key, (batch_size,), 0, self.size())
        return {k: v[idx] for k, v in self.data.items()}

    # ------------------------------------------------------------------ host side
    def rows(self, start: int, end: int) -> dict[str, np.ndarray]:
        """Online inserts number start..end-1, in insertion order, as numpy (all must still be held)."""
        count = int(self.count)
        if not (max(0, count - self.online_capacity) <= start <= end <= count):
            raise ValueError(f"inserts [{start}, {end}) are not held (count {count}, online capacity "
                             f"{self.online_capacity})")
        pos = self.offline_size + np.arange(start, end) % self.online_capacity
        return {k: np.asarray(jax.device_get(v[pos])) for k, v in self.data.items()}

    def online_rows(self) -> dict[str, np.ndarray]:
        """Every online row still held, oldest first."""
        count = int(self.count)
        return self.rows(max(0, count - self.online_capacity), count)

    def with_rows(self, start: int, rows: dict) -> "ReplayBuffer":
        """Place inserts number start.. (insertion order) at their rows; count becomes start + len(rows).

        Rows that the online region cannot hold (older than the last ``online_capacity``) are skipped."""
        n = len(rows["observations"])
        end = start + n
        if n == 0:
            return self.replace(count=jnp.asarray(end, jnp.int32))
        keep = max(start, end - self.online_capacity)
        pos = jnp.asarray(self.offline_size + np.arange(keep, end) % self.online_capacity)
        data = {k: self.data[k].at[pos].set(jnp.asarray(rows[k][keep - start:], jnp.float32)) for k in KEYS}
        return self.replace(data=data, count=jnp.asarray(end, jnp.int32))


def segment_path(directory: Path, start: int, end: int) -> Path:
    return Path(directory) / f"seg_{start:010d}_{end:010d}.npz"


def save_segment(directory: Path, buffer: ReplayBuffer, start: int) -> tuple[int, int] | None:
    """Write inserts [start, count) (only those still held) atomically; returns the (start, end) written."""
    end = int(buffer.count)
    start = max(start, end - buffer.online_capacity)
    if end <= start:
        return None
    rows = buffer.rows(start, end)
    with atomic_writer(segment_path(directory, start, end)) as f:
        np.savez(f, **rows)
    return start, end


def load_segments(directory: Path, segments, count: int, online_capacity: int) -> tuple[int, dict]:
    """Concatenate the listed segments into (first insert number, rows) covering the last
    min(count, online_capacity) inserts up to ``count``. Raises if a needed row is missing."""
    need = max(0, count - online_capacity)
    parts, have = [], need
    for start, end in sorted((int(a), int(b)) for a, b in segments):
        if end <= need:
            continue
        if start > have:
            break
        path = segment_path(directory, start, end)
        with np.load(path) as z:
            rows = {k: z[k] for k in KEYS}
        lo = have - start
        hi = min(end, count) - start
        if hi > lo:
            parts.append({k: v[lo:hi] for k, v in rows.items()})
            have = start + hi
    if have < count:
        raise ValueError(f"replay segments in {directory} hold online inserts only up to {have}, the checkpoint "
                         f"needs {need}..{count}; resume with the run's earlier --buffer-size (or another --run-dir)")
    if not parts:
        return need, {k: np.zeros((0,), np.float32) for k in KEYS}
    return need, {k: np.concatenate([p[k] for p in parts]) for k in KEYS}


def prune_segments(directory: Path, keep) -> None:
    """Delete segment files not in ``keep`` (obsolete ones and leftovers of a run killed mid-checkpoint)."""
    keep = {(int(a), int(b)) for a, b in keep}
    directory = Path(directory)
    if not directory.exists():
        return
    for p in directory.iterdir():
        m = SEGMENT.match(p.name)
        if (m and (int(m.group(1)), int(m.group(2))) not in keep) or SEGMENT_TEMP.match(p.name):
            p.unlink(missing_ok=True)
