"""Certify images on remote devices: one worker process per RPC session, results in index order.

TVM's RPC tracker decides which server each session goes to (every worker asks it for a free
server under the key); this module only hands out images and collects certificates. Each worker
is a process holding one session with the artifact uploaded, so that a server that dies or stops
answering costs only that worker: the process is killed after ``timeout`` seconds, and the image
it had goes back to the remaining workers. Certificates come out in the order of the images, so
a results file written from them is a prefix of the full run at every moment (resumable).

Each certificate is ``SmoothedClassifier.certify`` on the device, with the stream rules of the
image's dataset index: the same seed gives the same certificates on any device and any number of
workers.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from tvm_intsmooth.certify.cohen import Certificate
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.remote.session import Device, device_report, load_artifact, tracker_servers
from tvm_intsmooth.runtime.artifact import ArtifactMeta
from tvm_intsmooth.runtime.base import BaseSmoothedClassifier, CertifyJob
from tvm_intsmooth.runtime.smoothed_classifier import SmoothedClassifier, check_sample_count

DEFAULT_TIMEOUT = 600.0
SPAWN_TIMEOUT = 300.0  # a new worker process imports TVM: slow on a busy machine


def _worker_main(conn, device: Device, artifact: str, options: dict) -> None:
    """A worker process: open a session, load the artifact there, certify until told to stop."""
    import threading

    from tqdm import tqdm

    # tqdm's default lock is a multiprocessing semaphore, which a killed worker would leak
    tqdm.set_lock(threading.RLock())
    conn.send(("started", None))  # imports done: the timeout counts from here
    try:
        session = device.open()
    except Exception as err:
        conn.send(("unavailable", str(err)))
        return
    try:
        clf = load_artifact(artifact, session)
        conn.send(("ready", device_report(session)))
    except IntSmoothError as err:  # the artifact cannot run there: no other server will do
        conn.send(("fatal", str(err)))
        return
    except Exception as err:
        conn.send(("failed", _describe(err)))
        return
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        start = time.monotonic()
        try:
            cert = clf.certify(job.image, index=job.index, progress=False, **options)
        except IntSmoothError as err:
            conn.send(("fatal", str(err)))
            return
        except Exception as err:
            conn.send(("failed", _describe(err)))
            return
        conn.send(("done", (cert, time.monotonic() - start)))


def _describe(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return "".join(traceback.format_exception_only(err)).strip()
    return lines[-1] if len(lines) < 3 else f"{lines[0]} ... {lines[-1]}"


class _Worker:
    def __init__(self, number: int, ctx, device: Device, artifact: Path, options: dict, timeout):
        self.number = number
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_main,
            args=(child, device, str(artifact), options),
            name=f"intsmooth-rpc-worker-{number}",
            daemon=True,
        )
        self.proc.start()
        child.close()
        self.timeout = timeout
        self.deadline = time.monotonic() + max(timeout, SPAWN_TIMEOUT)  # to import TVM
        self.ready = False
        self.name = f"worker {number}"
        self.job: int | None = None  # position in the job list
        self.job_index: int | None = None  # its dataset index

    def assign(self, position: int, job: CertifyJob) -> None:
        self.conn.send(job)
        self.job, self.job_index = position, job.index
        self.deadline = time.monotonic() + self.timeout

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def certify_remote(
    artifact: str | Path,
    device: Device,
    jobs: Sequence[CertifyJob],
    *,
    n0: int,
    n: int,
    alpha: float,
    seed: int,
    workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    say: Callable[[str], None] | None = None,
) -> Iterator[tuple[int, Certificate, float]]:
    """Certify ``jobs`` on ``device``; yields ``(index, Certificate, seconds)`` in job order.

    Args:
        artifact: the artifact folder, compiled for the device's architecture.
        device: one RPC server (one worker) or a tracker key (``workers`` sessions, by default
            one per free server under the key).
        timeout: seconds a worker may take to connect, and then to certify one image, before
            its server counts as dead.
        say: called with one line when a server fails or is dropped.

    Raises:
        IntSmoothError: no server is left while images remain (every finished certificate has
            been yielded by then), or the artifact cannot run on the device.
    """
    say = say or (lambda text: None)
    if device.is_local:
        raise IntSmoothError("certify_remote needs an RPC server or a tracker key")
    if not jobs:
        return
    if device.tracker is not None:
        free = tracker_servers(device.tracker, device.key, device.timeout)
        count = workers or max(free, 1)
    else:
        count = 1
        if workers not in (None, 1):
            raise IntSmoothError("--workers goes with --tracker: one RPC server is one session")
    count = min(count, len(jobs))
    options = {"n0": n0, "n": n, "alpha": alpha, "seed": seed}
    ctx = multiprocessing.get_context("spawn")
    live = [_Worker(i + 1, ctx, device, Path(artifact), options, timeout) for i in range(count)]
    pending = deque(range(len(jobs)))
    finished: dict[int, tuple] = {}
    losses: list[str] = []
    next_out = 0
    try:
        while next_out < len(jobs):
            for w in live:
                if w.ready and w.job is None and pending:
                    w.assign(pending[0], jobs[pending.popleft()])
            if not live:
                raise IntSmoothError(
                    f"no server of {device} is left, with {len(jobs) - next_out} of {len(jobs)} "
                    f"images not certified ({'; '.join(losses) or 'none could be reached'}). "
                    "Every finished row is kept: start servers and run the same command again "
                    "to resume."
                )
            now = time.monotonic()
            wait([w.conn for w in live], timeout=max(0.0, min(w.deadline for w in live) - now))
            for w in list(live):
                outcome = _poll(w)
                if outcome is None:
                    continue
                kind, value = outcome
                if kind == "started":  # now connecting and loading the artifact
                    w.deadline = time.monotonic() + w.timeout
                elif kind == "ready":
                    w.ready, w.name = True, _server_name(value, w.number)
                elif kind == "done":
                    finished[w.job] = value
                    w.job = None
                elif kind == "fatal":
                    raise IntSmoothError(value)
                else:  # "unavailable", "failed", "timeout", "exited"
                    live.remove(w)
                    if kind == "timeout":
                        w.proc.kill()
                    w.stop()
                    lost = ""
                    if w.job is not None:
                        pending.appendleft(w.job)
                        pending = deque(sorted(pending))
                        lost = f"; image {jobs[w.job].index} goes back to the other servers"
                    losses.append(f"{w.name}: {value}")
                    if kind != "unavailable" or not live:
                        say(f"{w.name} dropped ({value}){lost}")
            while next_out in finished:
                cert, seconds = finished.pop(next_out)
                yield jobs[next_out].index, cert, seconds
                next_out += 1
    finally:
        for w in live:
            w.stop()


def _poll(w: _Worker) -> tuple[str, object] | None:
    """The worker's next message, or why it is gone, or None while it is working in time."""
    try:
        if w.conn.poll():
            return w.conn.recv()
    except (EOFError, OSError):
        w.proc.join(1)
        return ("exited", f"its worker process ended (exit code {w.proc.exitcode})")
    if not w.proc.is_alive():
        return ("exited", f"its worker process ended (exit code {w.proc.exitcode})")
    if time.monotonic() > w.deadline:
        what = f"image {w.job_index}" if w.ready else "connecting and loading the artifact"
        return ("timeout", f"no answer within {w.timeout:.0f} s ({what})")
    return None


class RemoteCertifier(BaseSmoothedClassifier):
    """An artifact certified on remote devices: :meth:`certify_many` shards images over the
    sessions of ``device`` (one RPC server, or every free server of a tracker's key).

    Its VMs live in worker processes; :meth:`counts` (and so :meth:`certify` and
    :meth:`predict` of one image) runs on one session of the device, opened at the first call.
    The library's SHA-256 is checked here, before anything is uploaded; the workers check the
    facts compiled into it.
    """

    def __init__(
        self,
        artifact: str | Path,
        device: Device,
        *,
        workers: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        say: Callable[[str], None] | None = None,
    ):
        self.artifact = Path(artifact)
        meta = ArtifactMeta.from_file(self.artifact)
        meta.check_library(self.artifact)
        self.input_shape = meta.input_shape
        self.num_classes = meta.num_classes
        self.sigma = meta.sigma
        self.tv_bound = meta.tv_bound
        self.batch = meta.batch
        self.device = device
        self.workers = workers
        self.timeout = timeout
        self.say = say
        self._session_classifier: SmoothedClassifier | None = None

    def check_n(self, n: int) -> int:
        """``n`` if one stream can draw that many samples, else an IntSmoothError."""
        return check_sample_count(n, self.batch)

    def counts(
        self, x: np.ndarray, n: int, seed: int, stream: int = 0, progress: bool | None = None
    ) -> np.ndarray:
        """Vote counts of samples 0..n-1 of ``stream``, on one session of the device."""
        if self._session_classifier is None:
            self._session_classifier = load_artifact(self.artifact, self.device.open())
        return self._session_classifier.counts(x, n, seed, stream, progress)

    def certify_many(
        self,
        jobs: Sequence[CertifyJob],
        n0: int,
        n: int,
        alpha: float,
        *,
        seed: int,
        progress: bool | None = None,
    ) -> Iterator[tuple[int, Certificate, float]]:
        """CERTIFY of every job, sharded over the device's sessions: ``(index, Certificate,
        seconds)`` in job order (the workers show no progress bars)."""
        return certify_remote(
            self.artifact,
            self.device,
            jobs,
            n0=n0,
            n=n,
            alpha=alpha,
            seed=seed,
            workers=self.workers,
            timeout=self.timeout,
            say=self.say,
        )


def _server_name(report: dict, number: int) -> str:
    return f"worker {number} ({report.get('name', 'unknown')}, {report.get('machine', '?')})"
