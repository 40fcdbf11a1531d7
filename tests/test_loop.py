"""The one training loop: events on schedule, averaged log rows, and what a deadline leaves behind."""

import time

from qflow.training import loop


class CountingJob:
    """Advances 10 steps a round; records every event it is asked to handle."""

    desc = "count"

    def __init__(self, total=60, every=None, start=0, slow_from=None):
        self.total, self.start, self.slow_from = total, start, slow_from
        self.every = every or {"log": 20, "checkpoint": 30, "export": 30}
        self.events = []

    def restore(self):
        return self.start

    def advance(self, step):
        if self.slow_from is not None and step >= self.slow_from:
            time.sleep(0.05)
        return step + 10, {"x": float(step + 10)}

    def log(self, step, means):
        self.events.append(("log", step, dict(means)))

    def eval(self, step):
        self.events.append(("eval", step))

    def checkpoint(self, step):
        self.events.append(("checkpoint", step))

    def export(self, step):
        self.events.append(("export", step))

    def finish(self, step, stop):
        return step, stop


def test_events_come_on_schedule_with_the_mean_of_the_rounds_since_the_last_row():
    job = CountingJob()
    assert loop.run(job, progress=False) == (60, "steps reached")
    assert job.events == [("log", 20, {"x": 15.0}), ("checkpoint", 30), ("export", 30), ("log", 40, {"x": 35.0}),
                          ("log", 60, {"x": 55.0}), ("checkpoint", 60), ("export", 60)]


def test_a_deadline_saves_where_the_job_stands_without_repeating_what_was_just_done():
    job = CountingJob(total=10_000, slow_from=0)  # every round takes 50 ms
    step, stop = loop.run(job, progress=False, deadline=time.time() + 0.5)
    assert stop == "deadline" and 0 < step < 10_000
    at_stop = [e[0] for e in job.events if e[1] == step]
    assert sorted(at_stop) == ["checkpoint", "export", "log"]  # each once, whether due there or not
    logs = [e for e in job.events if e[0] == "log"]
    assert all(e[2] for e in logs) and logs[-1][2]["x"] > logs[-2][2]["x"]  # no empty row, none repeated


def test_a_job_resumed_past_its_deadline_writes_nothing():
    job = CountingJob(start=30)
    assert loop.run(job, progress=False, deadline=time.time() - 1) == (30, "deadline")
    assert job.events == []
