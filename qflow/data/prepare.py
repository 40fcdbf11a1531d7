"""Make a dataset's two files available: official files, OGBench's download, or regeneration.

Layout under the data dir (default ``~/.ogbench/data``, or ``$QFLOW_DATA_DIR``):

- ``NAME.npz`` / ``NAME-val.npz``: official files, or a full-size regeneration with seed 0, so
  that ``ogbench.make_env_and_datasets(..., dataset_dir=DATA_DIR)`` loads them directly;
- ``regenerated/episodes{N}-seed{S}/NAME.npz``: any other size or seed, never mistaken for the
  full dataset.

Each file has a sidecar ``FILE.json`` with origin, recipe, seed, episodes, versions and sha256.
Generation writes shards of episodes into ``.NAME.partial/`` (atomically, so a killed run resumes
from the last finished shard) and renames the merged files into place last.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np

from qflow.data.generate import episode_seed, make_collector
from qflow.data.registry import EXPERT_KINDS, REGENERABLE, check_dataset_name
from qflow.errors import QFlowError
from qflow.settings import flag
from qflow.utils import atomic_write_json, atomic_writer, file_lock, package_versions

SHARD_EPISODES = 10


class DatasetError(QFlowError, RuntimeError):
    """A dataset is missing, truncated or inconsistent; the message says how to fix it."""


def default_data_dir() -> Path:
    return Path(os.environ.get("QFLOW_DATA_DIR", "~/.ogbench/data")).expanduser()


@dataclasses.dataclass(frozen=True)
class DatasetFiles:
    name: str
    directory: Path  # pass as ogbench's dataset_dir
    origin: str  # "official" or "regenerated"
    episodes: int  # training episodes (validation has max(1, episodes // 10))
    seed: int | None

    @property
    def train(self) -> Path:
        return self.directory / f"{self.name}.npz"

    @property
    def val(self) -> Path:
        return self.directory / f"{self.name}-val.npz"

    def metadata(self) -> dict:
        return json.loads(sidecar(self.train).read_text())


def val_episodes(train_episodes: int) -> int:
    return max(1, train_episodes // 10)


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def official_episodes(name: str) -> int:
    return REGENERABLE[name].episodes if name in REGENERABLE else 1000


def dataset_dir(name: str, episodes: int | None, seed: int, data_dir: Path | None) -> tuple[Path, int]:
    """Where a dataset of this size and seed lives, and its number of training episodes."""
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    full = official_episodes(name)
    episodes = full if episodes is None else episodes
    if episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {episodes}")
    if episodes == full and seed == 0:
        return root, episodes
    return root / "regenerated" / f"episodes{episodes}-seed{seed}", episodes


def regenerate_command(name: str, episodes: int, seed: int, root: Path) -> str:
    return f"qflow data prepare {name} --episodes {episodes} --seed {seed} --data-dir {root}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(files: DatasetFiles, fix_hint: str) -> None:
    """Raise DatasetError naming the file and ``fix_hint`` if a file is truncated or altered."""
    for path in (files.train, files.val):
        meta_path = sidecar(path)
        if meta_path.exists():
            try:
                expected = json.loads(meta_path.read_text())["sha256"]
            except (ValueError, KeyError) as err:
                raise DatasetError(f"corrupted metadata {meta_path} ({err}); to rebuild: {fix_hint}") from err
            if sha256(path) != expected:
                raise DatasetError(
                    f"{path} does not match the sha256 in {meta_path.name} (truncated or modified). "
                    f"Move it away and run: {fix_hint}"
                )
        try:
            with np.load(path) as npz:
                missing = {"observations", "actions", "terminals"} - set(npz.files)
                for key in npz.files:
                    npz[key]  # reads and CRC-checks every member
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise DatasetError(f"{path} is truncated or corrupted ({err}). Move it away and run: {fix_hint}") from err
        if missing:
            raise DatasetError(f"{path} lacks keys {sorted(missing)}. Move it away and run: {fix_hint}")


def machine() -> dict:
    """The CPU that made a file: the same recipe, seed and versions give other bytes on another CPU model."""
    import platform

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:  # not Linux: platform's answer stands
        pass
    return {"cpu": model, "arch": platform.machine(), "system": platform.system()}


def _write_metadata(files: DatasetFiles, extra: dict) -> None:
    for path in (files.train, files.val):
        meta = {
            "dataset": files.name,
            "file": path.name,
            "origin": files.origin,
            "episodes": files.episodes if path == files.train else val_episodes(files.episodes),
            "seed": files.seed,
            "sha256": sha256(path),
            "versions": package_versions(),
            "machine": machine(),  # regenerated bytes depend on the CPU's floating point (see README, Data)
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **extra,
        }
        atomic_write_json(sidecar(path), meta)


@contextlib.contextmanager
def dataset_lock(directory: Path, name: str, progress: bool = True):
    """An exclusive lock on one dataset of one directory while it is checked or made.

    A second process (a second `qflow data prepare`, or training runs started together on a fresh
    data dir) waits here, then finds the finished files instead of regenerating over them.
    """
    def say(holder):
        if progress:
            print(f"[qflow] {name}: waiting for {holder}, which is making it in {directory}", flush=True)

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(directory / f".{name}.lock", f"preparing {name}", wait=True, on_wait=say))
        except OSError as err:  # a read-only data dir: nobody can write there, so there is nothing to guard
            if err.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise
        yield


@dataclasses.dataclass(frozen=True)
class PrepareSettings:
    """`qflow data prepare`'s flags: the arguments of ``prepare``."""

    # flags refuse values below these (every other integer: below 0)
    AT_LEAST = {"episodes": 1, "workers": 1}

    dataset: str = dataclasses.field(metadata=flag(positional=True, help="e.g. cube-single-play-v0"))
    episodes: int | None = None  # training episodes (default: the official size)
    seed: int = 0  # generation seed of a regenerated dataset
    data_dir: str | None = None  # dataset directory (default $QFLOW_DATA_DIR, else ~/.ogbench/data)
    workers: int | None = None  # generation processes (default: one per core)
    download: bool = True  # try OGBench's download when no files are found (--no-download skips it)
    assume_official: bool = False  # files found in the data dir without metadata sidecars are OGBench's official files
    expert: str | None = None  # antmaze only: the ant expert (DIR/expert.msgpack from `qflow expert train --run-dir DIR`)


def prepare(
    name: str,
    episodes: int | None = None,
    seed: int = 0,
    data_dir: Path | str | None = None,
    workers: int | None = None,
    download: bool = True,
    progress: bool = True,
    expert: Path | str | None = None,
    assume_official: bool = False,
) -> DatasetFiles:
    """Return the dataset's files, producing them if needed (official > download > regenerate).

    ``assume_official``: files found without metadata are OGBench's official files (the user's word).
    """
    check_dataset_name(name)
    directory, episodes = dataset_dir(name, episodes, seed, data_dir)
    with dataset_lock(directory, name, progress):
        return _prepare_locked(name, episodes, seed, data_dir, directory, workers, download, progress, expert,
                               assume_official)


def _prepare_locked(name, episodes, seed, data_dir, directory, workers, download, progress, expert,
                    assume_official) -> DatasetFiles:
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    is_full = directory == root
    files = DatasetFiles(name, directory, "official", episodes, None)
    fix = regenerate_command(name, episodes, seed, root)

    partial = _partial_dir(files)
    if files.train.exists() and files.val.exists() and not partial.exists():
        verify(files, fix)  # first: it also reports unreadable sidecars with the fix
        # official files live at the data dir's top level, never in a regenerated/episodesN-seedS/ folder
        official_place = is_full and not (root.parent.name == "regenerated" and root.name.startswith("episodes"))
        return _known_origin(files, fix, assume_official, official_place)

    if is_full and download and _try_download(name, directory):
        verify(files, fix)
        _write_metadata(files, {"source": "ogbench.download_datasets"})
        return files

    recipe = REGENERABLE.get(name)
    expert_model = None
    if recipe is not None and recipe.kind in EXPERT_KINDS:
        if expert is None:
            raise DatasetError(
                f"{name} is regenerated with a trained ant expert: run `qflow expert train --run-dir "
                f"runs/experts/ant-xy-seed0`, then `qflow data prepare {name} --expert "
                f"runs/experts/ant-xy-seed0/expert.msgpack`; or place the official files {name}.npz and "
                f"{name}-val.npz in {root} (or pass --data-dir / set QFLOW_DATA_DIR).")
        from qflow.agents.expert_policy import Expert

        expert_model = Expert(expert)
    elif recipe is None:  # humanoidmaze, antsoccer, antmaze stitch/explore: no recipe here
        raise DatasetError(
            f"{name} cannot be regenerated here (it needs a trained expert policy). Place the official files "
            f"{name}.npz and {name}-val.npz in {root} (or pass --data-dir / set QFLOW_DATA_DIR)."
        )
    for path in (files.train, files.val):
        if path.exists() and not partial.exists():  # half a pair: never overwrite what the user has
            raise DatasetError(f"{path} exists but its partner file does not. Move it away and run: {fix}")

    files = dataclasses.replace(files, origin="regenerated", seed=seed)
    started = time.time()
    _regenerate(files, partial, workers=workers, progress=progress, expert=expert_model)
    # wall time of this call (a resumed generation counts only its own part) and its workers
    extra = {"generation": {"seconds_this_call": round(time.time() - started, 1), "workers": workers or os.cpu_count()},
             **({"expert": expert_model.record()} if expert_model else {})}
    _write_metadata(files, {"recipe": recipe.as_dict(), "shard_episodes": SHARD_EPISODES, **extra})
    shutil.rmtree(partial)  # last: until here a rerun resumes from the shards
    return files


def _known_origin(files: DatasetFiles, fix: str, assume_official: bool, official_place: bool) -> DatasetFiles:
    """The files with the origin their sidecars record; a file without one is never presumed official.

    Both sidecars missing: the files are recorded as official only when the user says so
    (``--assume-official``) and they sit where official files go (``official_place``: the data dir's
    top level, at the official size; a regeneration of another size or seed is never taken for them).
    One missing: refused (its partner's origin is not evidence for it). An existing sidecar is never rewritten.
    """
    missing = [p for p in (files.train, files.val) if not sidecar(p).exists()]
    if len(missing) == 1:
        raise DatasetError(f"{sidecar(missing[0])} is missing while its partner's exists, so the origin of "
                           f"{missing[0].name} is unknown; restore the sidecar, or move both files away and run: {fix}")
    if missing and not official_place:
        raise DatasetError(
            f"{files.train} and {files.val.name} have no metadata sidecars and sit where regenerated datasets of "
            f"{files.episodes} episodes go, so they cannot be OGBench's official files; move them away and run: {fix}")
    if missing and not assume_official:
        raise DatasetError(
            f"{files.train} and {files.val.name} have no metadata sidecars, so their origin is unknown. If they are "
            f"OGBench's official files, run `qflow data prepare {files.name} --data-dir {files.directory} "
            f"--no-download --assume-official` once to record "
            f"them as such; if "
            f"they were regenerated, move them away and run: {fix}")
    if missing:
        _write_metadata(files, {"note": "files found without metadata; recorded as official on the user's word "
                                        "(qflow data prepare --assume-official)"})
        return files
    meta = json.loads(sidecar(files.train).read_text())
    if meta.get("origin") not in ("official", "regenerated"):
        raise DatasetError(f"corrupted metadata {sidecar(files.train)} (no valid 'origin'); to rebuild: {fix}")
    return dataclasses.replace(files, origin=meta["origin"], seed=meta.get("seed"))


def _partial_dir(files: DatasetFiles) -> Path:
    return files.directory / f".{files.name}.partial"


def _try_download(name: str, directory: Path) -> bool:
    import socket

    import ogbench

    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        ogbench.download_datasets([name], dataset_dir=str(directory))
        return True
    except Exception as err:  # no network, HTTP error, ...: fall back to regeneration
        print(f"[qflow] download of {name} unavailable ({type(err).__name__}); regenerating by OGBench's recipe")
        for leftover in directory.glob(f"{name}*.npz.tmp"):
            leftover.unlink()  # ogbench's own partial download, never a user file
        return False
    finally:
        socket.setdefaulttimeout(old_timeout)


# ---------------------------------------------------------------- regeneration with workers
_COUNTER = None


def _init_worker(counter) -> None:
    global _COUNTER
    _COUNTER = counter
    _die_with_parent()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")  # the expert's tiny MLP: one thread


def _die_with_parent() -> None:
    """A generation worker stops when the process that started it dies (kill -9 included), instead of going
    on writing shards of a dataset nobody is making any more (Linux; elsewhere the pool's shutdown is all)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the line above: no signal will come
        os._exit(1)


def _make_shard(args) -> str:
    """Generate episodes [start, stop) and write them atomically as one shard file."""
    name, seed, start, stop, out, expert_path = args
    expert = None
    if expert_path:
        from qflow.agents.expert_policy import Expert

        expert = Expert(expert_path)
    collector = make_collector(REGENERABLE[name], expert)
    episodes = []
    for index in range(start, stop):
        episodes.append(collector.episode(episode_seed(seed, index)))
        if _COUNTER is not None:
            with _COUNTER.get_lock():
                _COUNTER.value += len(episodes[-1]["actions"])
    merged = {k: np.concatenate([ep[k] for ep in episodes]) for k in episodes[0]}
    with atomic_writer(Path(out)) as f:
        np.savez(f, **merged)
    return out


def _regenerate(files: DatasetFiles, partial: Path, workers: int | None, progress: bool, expert=None) -> None:
    from tqdm import tqdm

    recipe = REGENERABLE[files.name]
    n_train, n_val = files.episodes, val_episodes(files.episodes)
    total_episodes = n_train + n_val
    partial.mkdir(parents=True, exist_ok=True)
    stamp = {"name": files.name, "seed": files.seed, "episodes": files.episodes, "shard": SHARD_EPISODES,
             **({"expert_sha256": expert.sha256} if expert else {})}  # shards of another expert never mix
    stamp_path = partial / "job.json"
    if stamp_path.exists() and json.loads(stamp_path.read_text()) != stamp:
        raise DatasetError(f"{partial} holds shards of a different job; move it away and rerun")
    atomic_write_json(stamp_path, stamp)

    jobs, done_rows = [], 0
    for start in range(0, total_episodes, SHARD_EPISODES):
        stop = min(start + SHARD_EPISODES, total_episodes)
        out = partial / f"shard-{start:06d}.npz"
        if out.exists():
            done_rows += (stop - start) * recipe.episode_rows
        else:
            jobs.append((files.name, files.seed, start, stop, str(out), str(expert.path) if expert else None))
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    total_rows = total_episodes * recipe.episode_rows

    counter = mp.get_context("spawn").Value("q", 0)
    bar = tqdm(total=total_rows, initial=done_rows, unit="tr", unit_scale=True, disable=not progress,
               desc=f"regenerating {files.name} ({workers} workers)")
    with contextlib.ExitStack() as stack:
        if jobs:
            pool = stack.enter_context(
                mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(counter,))
            )
            pending = pool.map_async(_make_shard, jobs, chunksize=1)
            seen = 0
            while not pending.ready():
                pending.wait(0.5)
                now = counter.value
                bar.update(now - seen)
                seen = now
            pending.get()  # re-raises a worker's exception
            bar.update(counter.value - seen)
    bar.close()
    _merge(files, partial, n_train, total_episodes, recipe.episode_rows)


def _merge(files: DatasetFiles, partial: Path, n_train: int, total_episodes: int, rows: int) -> None:
    """Write train/val files from the shards with one preallocated copy of the data in memory.

    Every shard the job needs must be there with the rows it should hold, and every row of the
    output is written from one: nothing uninitialised can reach the disk.
    """
    expected = [partial / f"shard-{start:06d}.npz" for start in range(0, total_episodes, SHARD_EPISODES)]
    missing = [p.name for p in expected if not p.exists()]
    if missing:
        raise DatasetError(f"{partial} lacks {len(missing)} of {len(expected)} shards ({', '.join(missing[:3])}"
                           f"{', ...' if len(missing) > 3 else ''}); rerun the same command to make them")
    shard_paths = expected
    with np.load(shard_paths[0]) as first:
        specs = {k: (first[k].shape[1:], first[k].dtype) for k in first.files}
    splits = {files.train: (0, n_train), files.val: (n_train, total_episodes)}
    for path, (ep_lo, ep_hi) in splits.items():
        arrays = {k: np.empty(((ep_hi - ep_lo) * rows, *shape), dtype) for k, (shape, dtype) in specs.items()}
        filled = 0
        for shard in shard_paths:
            start = int(shard.stem.split("-")[1])
            stop = min(start + SHARD_EPISODES, total_episodes)
            lo, hi = max(start, ep_lo), min(stop, ep_hi)
            if lo >= hi:
                continue
            with np.load(shard) as data:
                for k in arrays:
                    if data[k].shape[0] != (stop - start) * rows:
                        raise DatasetError(f"{shard} holds {data[k].shape[0]} rows of {k}, not {(stop - start) * rows}; "
                                           f"delete it and rerun the same command")
                    arrays[k][(lo - ep_lo) * rows:(hi - ep_lo) * rows] = data[k][(lo - start) * rows:(hi - start) * rows]
            filled += (hi - lo) * rows
        if filled != (ep_hi - ep_lo) * rows:  # cannot happen with the checks above; never write holes
            raise DatasetError(f"merging {partial} filled {filled} of {(ep_hi - ep_lo) * rows} rows of {path.name}")
        with atomic_writer(path) as f:
            np.savez_compressed(f, **arrays)
        del arrays

