"""Settings dataclasses as the command line and TOML tables: flags, help, types and one-line errors."""

import argparse
import dataclasses

import pytest

from qflow.errors import QFlowError
from qflow.settings import add_flags, field_comments, flag, from_flags, from_table


@dataclasses.dataclass(frozen=True)
class Job:
    name: str  # what to call it
    steps: int = 10  # how many
    rate: float = 0.5  # how fast; a comment that goes on
    # over a second line
    seeds: tuple[int, ...] = (0,)  # which seeds
    tags: tuple = ("a",)  # free labels
    fast: bool = False  # go fast
    progress: bool = True  # show a bar
    sets: tuple[str, ...] = dataclasses.field(default=(), metadata=flag("--set", repeat=True))
    hidden: str = dataclasses.field(default="x", metadata=flag(cli=False))
    limit: int | None = None  # optional cap


def parser():
    p = argparse.ArgumentParser()
    add_flags(p, Job)
    return p


def test_comments_become_help_and_continue_on_comment_lines():
    comments = field_comments(Job)
    assert comments["steps"] == "how many"
    assert comments["rate"] == "how fast; a comment that goes on over a second line"
    assert "sets" not in comments
    text = parser().format_help()
    assert "how many (default 10)" in text and "--no-progress" in text and "--hidden" not in text


def test_flags_give_only_what_was_typed():
    args = parser().parse_args(["--name", "n", "--seeds", "0-2,5", "--fast", "--no-progress", "--set", "a=1",
                                "--set", "b=2", "--tags", "x,y", "--limit", "3"])
    job = from_flags(Job, args)
    assert job == Job(name="n", seeds=(0, 1, 2, 5), fast=True, progress=False, sets=("a=1", "b=2"),
                      tags=("x", "y"), limit=3)
    base = Job(name="b", steps=99)
    assert from_flags(Job, parser().parse_args(["--name", "n"]), base) == dataclasses.replace(base, name="n")


def test_bad_flag_values_name_the_flag(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["--name", "n", "--steps", "ten"])
    assert "--steps: expected an integer, got 'ten'" in capsys.readouterr().err


def test_tables_are_checked_key_by_key():
    assert from_table(Job, {"name": "n", "rate": 1, "seeds": "0-1", "tags": ["p"]}, "f.toml") == Job(
        name="n", rate=1.0, seeds=(0, 1), tags=("p",))
    with pytest.raises(QFlowError, match=r"^f.toml: unknown keys \['step'\]; known: .*steps"):
        from_table(Job, {"name": "n", "step": 3}, "f.toml")
    with pytest.raises(QFlowError, match="^f.toml: steps must be int, got 'many'"):
        from_table(Job, {"name": "n", "steps": "many"}, "f.toml")
    with pytest.raises(QFlowError, match="^f.toml: fast must be bool, got 1"):
        from_table(Job, {"name": "n", "fast": 1}, "f.toml")
    with pytest.raises(QFlowError, match="^f.toml: seeds must be a list of int, got 3.5"):
        from_table(Job, {"name": "n", "seeds": 3.5}, "f.toml")
    with pytest.raises(QFlowError, match="^f.toml: .*name"):
        from_table(Job, {"steps": 3}, "f.toml")
    with pytest.raises(QFlowError, match="^f.toml: steps must be >= 0, got -1"):  # held to the flag's minimum
        from_table(Job, {"name": "n", "steps": -1}, "f.toml")


def test_every_training_setting_is_a_train_flag_and_a_sweep_key_where_it_applies():
    from qflow.cli import build_parser
    from qflow.experiments.sweep import Spec
    from qflow.training.settings import TrainArgs

    train = build_parser().parse_args(["train", "--dataset-seed", "5", "--seed", "3"])
    assert from_flags(TrainArgs, train).dataset_seed == 5 and from_flags(TrainArgs, train).seeds == (3,)
    per_cell = {"env", "agent", "seeds", "run_dir", "overrides", "command", "tensorboard", "wandb", "eval_envs",
                "online_steps", "updates_per_step", "buffer_size",
                "init_from"}  # a branch starts from one run directory: a cell of its own, not a grid axis
    spec_fields = {f.name for f in dataclasses.fields(Spec)}
    missing = {f.name for f in dataclasses.fields(TrainArgs)} - per_cell - spec_fields
    assert not missing, f"training settings a sweep cannot set: {missing}"
    for f in dataclasses.fields(TrainArgs):
        if f.name != "command":
            assert f.name in field_comments(TrainArgs) or f.metadata.get("help"), f"{f.name} has no comment"


def test_fields_that_are_no_flag_never_take_the_parsers_own_names():
    """The subcommand's name lives in args.command; TrainArgs.command (not a flag) must stay unset, so the
    summary records the whole command line, not "train"."""
    from qflow.cli import build_parser
    from qflow.training.settings import TrainArgs

    args = build_parser().parse_args(["train", "--steps", "5"])
    assert args.command == "train"
    assert from_flags(TrainArgs, args).command is None and from_flags(TrainArgs, args).steps == 5
