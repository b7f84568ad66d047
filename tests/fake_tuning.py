"""A MetaSchedule builder and runner that only pretend to build and time candidates, so that
tests run the real search (task extraction, search space, evolutionary search, cost model) in
seconds per round on any CPU."""

from __future__ import annotations

import os
import signal
import tempfile

from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms


@derived_object
class FakeBuilder(ms.builder.PyBuilder):
    """Builds nothing: every candidate 'builds' (into an empty folder of its own)."""

    def __init__(self):
        super().__init__()
        self.built = 0

    def build(self, build_inputs):
        self.built += len(build_inputs)
        return [
            ms.builder.BuilderResult(tempfile.mkdtemp(prefix="fake_") + "/fake.so", None)
            for _ in build_inputs
        ]


@derived_object
class FakeRunner(ms.runner.PyRunner):
    """'Times' every candidate at ``seconds``; at its ``interrupt_at``-th call (the first call
    times the untuned schedules, each later one a candidate) it sends this process SIGINT, as
    Ctrl-C would while that candidate runs."""

    def __init__(self, seconds: float = 1e-3, interrupt_at: int | None = None):
        super().__init__()
        self.seconds, self.interrupt_at, self.calls = seconds, interrupt_at, 0

    def run(self, runner_inputs):
        self.calls += 1
        if self.calls == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        result = ms.runner.RunnerResult([self.seconds], None)
        return [ms.runner.RunnerFuture(lambda: True, lambda: result) for _ in runner_inputs]
