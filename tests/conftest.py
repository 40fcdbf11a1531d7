"""Shared fixtures. Markers (pyproject.toml): `e2e` = through the command line or subprocesses on a
regenerated dataset; `slow` = learning checks that train for a while. Fast selection:
pytest -m "not e2e and not slow"."""

import pytest


@pytest.fixture(scope="package")  # the tests package: made once for the whole run
def data_dir(tmp_path_factory):
    """A 3-episode pointmaze-medium-navigate dataset (seed 0), made once for every end-to-end test."""
    from qflow.cli import main

    root = tmp_path_factory.mktemp("data")
    assert main(["data", "prepare", "pointmaze-medium-navigate-v0", "--episodes", "3", "--data-dir", str(root),
                 "--workers", "1", "--no-download"]) == 0
    return root
