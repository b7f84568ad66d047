"""Stopping MetaSchedule's search on Ctrl-C, and saving after every round, for ``tune``.

MetaSchedule runs Python only in its callbacks, so a KeyboardInterrupt raised there is taken for
a failed candidate and the search goes on. Here SIGINT only sets a flag (:class:`StopOnInterrupt`):
:class:`StoppableBuilder` builds a round's candidates a few at a time (as many as its workers)
and :class:`StoppableRunner` runs them one at a time, each skipping those left once the flag is
set, :class:`StoppableSearch` then generates no more candidates (MetaSchedule ends each task
itself), and :class:`RoundEnd`, after every round, saves the database so far (a crash or a full
disk loses at most the round in progress) and stops the search the same way when a save fails.
Builder and runner worker processes ignore SIGINT (:func:`ignore_sigint`), so that
the candidate running when Ctrl-C comes finishes and is kept.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

INTERRUPTED = "interrupted (Ctrl-C) before it ran"


def ignore_sigint() -> None:
    """Initializer of MetaSchedule's worker processes: Ctrl-C is for the tuning process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class StopOnInterrupt:
    """While entered (in the main thread), SIGINT sets :attr:`requested` instead of raising;
    :attr:`stopping` once it did, or once :attr:`halted` was set (a save failed)."""

    def __init__(self):
        self.requested = False
        self.halted = False
        self._previous = None

    @property
    def stopping(self) -> bool:
        return self.requested or self.halted

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def is_interrupted(error_msg) -> bool:
    """Whether a build or run result is one that Ctrl-C skipped."""
    return error_msg is not None and INTERRUPTED in str(error_msg)


@derived_object
class StoppableBuilder(ms.builder.PyBuilder):
    """``builder``'s candidates built in chunks of its worker count; once ``stop`` is requested
    the rest of the round is not built."""

    def __init__(self, builder: ms.builder.Builder, stop: StopOnInterrupt):
        super().__init__()
        self.builder = builder
        self.stop = stop
        workers = getattr(getattr(builder, "_inst", builder), "max_workers", None)
        self.chunk = max(1, workers or os.cpu_count() or 1)

    def build(self, build_inputs: list) -> list:
        results = []
        for start in range(0, len(build_inputs), self.chunk):
            chunk = build_inputs[start : start + self.chunk]
            if self.stop.stopping:
                results += [ms.builder.BuilderResult(None, INTERRUPTED) for _ in chunk]
            else:
                results += list(self.builder.build(chunk))
        return results


@derived_object
class StoppableRunner(ms.runner.PyRunner):
    """``runner``'s candidates run one at a time; once ``stop`` is requested the rest of the
    batch is not run (its results say so, and are no trials)."""

    def __init__(self, runner: ms.runner.Runner, stop: StopOnInterrupt):
        super().__init__()
        self.runner = runner
        self.stop = stop

    def run(self, runner_inputs: list) -> list:
        results = []
        for runner_input in runner_inputs:
            if self.stop.stopping:
                result = ms.runner.RunnerResult(None, INTERRUPTED)
            else:
                (future,) = self.runner.run([runner_input])
                result = future.result()
            results.append(ms.runner.RunnerFuture(lambda: True, lambda r=result: r))
        return results


@derived_object
class StoppableSearch(ms.search_strategy.PySearchStrategy):
    """``search`` (MetaSchedule's evolutionary search) that generates no more candidates once
    ``stop`` is stopping: MetaSchedule then ends the task, as when a search space is exhausted."""

    def __init__(self, search: ms.search_strategy.SearchStrategy, stop: StopOnInterrupt):
        super().__init__()
        self.search = search
        self.stop = stop

    def _initialize_with_tune_context(self, context) -> None:
        self.search._initialize_with_tune_context(context)

    def pre_tuning(self, max_trials, num_trials_per_iter, design_spaces, database=None,
                   cost_model=None) -> None:  # fmt: skip
        self.search.pre_tuning(max_trials, num_trials_per_iter, design_spaces, database, cost_model)

    def post_tuning(self) -> None:
        self.search.post_tuning()

    def generate_measure_candidates(self):
        return None if self.stop.stopping else self.search.generate_measure_candidates()

    def notify_runner_results(self, measure_candidates, results) -> None:
        self.search.notify_runner_results(measure_candidates, results)

    def clone(self) -> StoppableSearch:
        return StoppableSearch(self.search.clone(), self.stop)


@derived_object
class RoundEnd(ms.measure_callback.PyMeasureCallback):
    """After every round: ``save()`` the database so far; a save that fails (its OSError is
    kept in :attr:`error`) halts the search."""

    def __init__(self, stop: StopOnInterrupt, save: Callable[[], None]):
        super().__init__()
        self.stop = stop
        self.save = save
        self.error: OSError | None = None

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
        if self.error is None:
            try:
                self.save()
            except OSError as err:
                self.error = err
                self.stop.halted = True
