"""Stopping MetaSchedule's search on Ctrl-C, and saving after every round, for ``tune``.

MetaSchedule runs Python only in its callbacks, so a KeyboardInterrupt raised there is taken for
a failed candidate and the search goes on. Here SIGINT only sets a flag (:class:`StopOnInterrupt`):
:class:`StoppableRunner` runs the candidates of a batch one at a time and skips those left once
the flag is set, and :class:`RoundEnd`, after every round, saves the database so far (a crash or
a full disk loses at most the round in progress) and ends every task once the flag is set or a
save failed. Builder and runner worker processes ignore SIGINT (:func:`ignore_sigint`), so that
the candidate running when Ctrl-C comes finishes and is kept.
"""

from __future__ import annotations

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
    """While entered (in the main thread), SIGINT sets :attr:`requested` instead of raising."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


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
            if self.stop.requested:
                result = ms.runner.RunnerResult(None, INTERRUPTED)
            else:
                (future,) = self.runner.run([runner_input])
                result = future.result()
            results.append(ms.runner.RunnerFuture(lambda: True, lambda r=result: r))
        return results


@derived_object
class RoundEnd(ms.measure_callback.PyMeasureCallback):
    """After every round: ``save()`` the database so far; end every task once ``stop`` is
    requested or a save failed (its OSError is kept in :attr:`error`)."""

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
        if self.stop.requested or self.error is not None:
            for i, task in enumerate(task_scheduler.tasks_):
                if not task.is_terminated:
                    task_scheduler.terminate_task(i)
