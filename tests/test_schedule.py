"""The schedule every training loop shares."""

import pytest

from qflow.training.schedule import Schedule


def test_events_are_due_at_their_multiples_and_at_the_last_step():
    s = Schedule(2500, {"log": 500, "eval": 1000, "checkpoint": 1000})
    assert s.due(500) == {"log"}
    assert s.due(1000) == {"log", "eval", "checkpoint"}
    assert s.due(1300) == set()
    assert s.due(2500) == {"log", "eval", "checkpoint"}  # the last step: everything, whatever the intervals
    assert s.chunk(1000) == 500  # every due step is a chunk boundary
    assert Schedule(2400, {"log": 1000}).chunk(1000) == 200


def test_zero_intervals_are_refused():
    with pytest.raises(ValueError, match="intervals must be >= 1"):
        Schedule(100, {"log": 0})
