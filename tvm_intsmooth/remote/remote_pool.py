"""Certify images on remote devices: one worker process per RPC session, results in index order.

TVM's RPC tracker decides which server each session goes to (every worker asks it for a free
server under the key); this module only hands out images and collects certificates. Each worker
is a process holding one session with the artifact uploaded, so that a server that dies or stops
answering costs only that worker: the process is killed after ``timeout`` seconds, and the image
it had goes back to the remaining workers. Certificates come out in the order of the images, so
a results file written from them is a prefix of the full run at every moment (resumable). The
workers check the servers' vote counts (:mod:`tvm_intsmooth.remote.verify`): a server whose
counts fail is dropped, and its image, with any other of its images not yet written, is
refused (no row; the run ends with an error naming it once the other rows are out).

Each certificate is ``SmoothedClassifier.certify`` on the device, with the stream rules of the
image's dataset index: the same seed gives the same certificates on any device and any number of
workers. With ``radii`` it is sequential certification, run by the worker on its session: the
estimation samples are requested range by range, only as many as the image needs.
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
from tvm_intsmooth.certify.sequential import SequentialCertificate
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.remote.session import (
    Device,
    device_report,
    load_artifact,
    session_address,
    tracker_servers,
)
from tvm_intsmooth.remote.verify import (
    DEFAULT_VERIFY,
    ForgedCounts,
    VerifiedCounts,
    check_fraction,
    load_verifier,
)
from tvm_intsmooth.runtime.artifact import ArtifactMeta
from tvm_intsmooth.runtime.base import DEFAULT_N0, BaseSmoothedClassifier, CertifyJob
from tvm_intsmooth.runtime.host_library import verification_library
from tvm_intsmooth.runtime.smoothed_classifier import check_sample_count

DEFAULT_TIMEOUT = 600.0
SPAWN_TIMEOUT = 300.0  # a new worker process imports TVM: slow on a busy machine


def _worker_main(conn, device: Device, artifact: str, options: dict, verify: float) -> None:
    """A worker process: open a session, load the artifact there, certify until told to stop;
    the session's counts are checked by :class:`VerifiedCounts` (``verify``: the share of
    batches recomputed here)."""
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
        report = {**device_report(session), "address": session_address(session)}
        clf = VerifiedCounts(
            load_artifact(artifact, session),
            load_verifier(artifact) if verify else None,
            verify,
            f"the RPC server {report['address']} ({report.get('name', 'unknown')})",
        )
        conn.send(("ready", report))
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
        except ForgedCounts as err:  # the image is refused, and this server with it
            conn.send(("forged", str(err)))
            return
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
    def __init__(self, number: int, ctx, device: Device, artifact: Path, options: dict, timeout,
                 verify: float):  # fmt: skip
        self.number = number
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_worker_main,
            args=(child, device, str(artifact), options, verify),
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
        self.served: list[int] = []  # positions of the images it certified

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
    n: int | None = None,
    alpha: float,
    seed: int,
    radii: Sequence[float] | None = None,
    n_max: int | None = None,
    workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    verify: float = DEFAULT_VERIFY,
    say: Callable[[str], None] | None = None,
) -> Iterator[tuple[int, Certificate | SequentialCertificate, float]]:
    """Certify ``jobs`` on ``device``; yields ``(index, certificate, seconds)`` in job order.

    ``n0``, ``n``, ``alpha``, ``seed``, ``radii`` and ``n_max`` are those of
    :meth:`BaseSmoothedClassifier.certify` (sequential at ``radii`` when they are given).

    Args:
        artifact: the artifact folder, compiled for the device's architecture.
        device: one RPC server (one worker) or a tracker key (``workers`` sessions, by default
            one per free server under the key).
        timeout: seconds a worker may take to connect, and then to certify one image, before
            its server counts as dead.
        verify: the share of the servers' batches that the host recomputes
            (:class:`~tvm_intsmooth.remote.verify.VerifiedCounts`; 0: none).
        say: called with one line when a server fails or is dropped.

    Raises:
        IntSmoothError: no server is left while images remain, or a server's counts were
            refused (every other finished certificate has been yielded by then), or the
            artifact cannot run on the device.
    """
    if device.is_local:
        raise IntSmoothError("certify_remote needs an RPC server or a tracker key")
    if not jobs:
        return
    count = min(_session_count(device, workers), len(jobs))
    if check_fraction(verify):  # before any worker starts: this machine must run a library
        verification_library(artifact, ArtifactMeta.from_file(artifact))
    options = {"n0": n0, "n": n, "alpha": alpha, "seed": seed, "radii": radii, "n_max": n_max}
    pool = _Pool(jobs, device, say or (lambda text: None))
    ctx = multiprocessing.get_context("spawn")
    for i in range(count):
        pool.live.append(_Worker(i + 1, ctx, device, Path(artifact), options, timeout, verify))
    try:
        while pool.next_out < len(jobs):
            pool.assign()
            pool.wait()
            yield from pool.rows()
        pool.raise_refused()
    finally:
        pool.stop()


def _session_count(device: Device, workers: int | None) -> int:
    if device.tracker is not None:
        return workers or max(tracker_servers(device.tracker, device.key, device.timeout), 1)
    if workers not in (None, 1):
        raise IntSmoothError("--workers goes with --tracker: one RPC server is one session")
    return 1


class _Pool:
    """The workers of one :func:`certify_remote` run and its images: pending, finished (not
    yet yielded), refused (their counts failed the host's check)."""

    def __init__(self, jobs: Sequence[CertifyJob], device: Device, say: Callable[[str], None]):
        self.jobs, self.device, self.say = jobs, device, say
        self.live: list[_Worker] = []
        self.pending = deque(range(len(jobs)))
        self.finished: dict[int, tuple] = {}
        self.refused: dict[int, str] = {}  # position -> why
        self.losses: list[str] = []
        self.next_out = 0

    def assign(self) -> None:
        """Give every idle ready worker the first pending image; an error when none is left."""
        for w in self.live:
            if w.ready and w.job is None and self.pending:
                w.assign(self.pending[0], self.jobs[self.pending.popleft()])
        if not self.live:
            left = len(self.jobs) - self.next_out
            raise IntSmoothError(
                f"no server of {self.device} is left, with {left} of {len(self.jobs)} images "
                f"not certified ({'; '.join(self.losses) or 'none could be reached'}). Every "
                "finished row is kept: start servers and run the same command again to resume."
            )

    def wait(self) -> None:
        """Wait for a message from a worker, or the first deadline, and handle what came."""
        deadline = min(w.deadline for w in self.live)
        wait([w.conn for w in self.live], timeout=max(0.0, deadline - time.monotonic()))
        for w in list(self.live):
            outcome = _poll(w)
            if outcome is not None:
                self._handle(w, *outcome)

    def _handle(self, w: _Worker, kind: str, value) -> None:
        if kind == "started":  # now connecting and loading the artifact
            w.deadline = time.monotonic() + w.timeout
        elif kind == "ready":
            w.ready, w.name = True, _server_name(value, w.number)
        elif kind == "done":
            self.finished[w.job] = value
            w.served.append(w.job)
            w.job = None
        elif kind == "fatal":
            raise IntSmoothError(value)
        elif kind == "forged":
            self._refuse(w, value)
        else:  # "unavailable", "failed", "timeout", "exited"
            self._drop(w, kind, value)

    def _drop(self, w: _Worker, kind: str, value: str) -> None:
        self.live.remove(w)
        if kind == "timeout":
            w.proc.kill()
        w.stop()
        lost = ""
        if w.job is not None:
            self.pending = deque(sorted([*self.pending, w.job]))
            lost = f"; image {self.jobs[w.job].index} goes back to the other servers"
        self.losses.append(f"{w.name}: {value}")
        if kind != "unavailable" or not self.live:
            self.say(f"{w.name} dropped ({value}){lost}")

    def _refuse(self, w: _Worker, value: str) -> None:
        """A server returned counts that failed the host's check: drop it, and refuse its image
        and every image it certified that is not yielded yet."""
        self.live.remove(w)
        w.stop()
        mine = [w.job, *(p for p in w.served if p in self.finished)]
        for position in mine:
            self.finished.pop(position, None)
            self.refused[position] = value
        indices = ", ".join(str(self.jobs[p].index) for p in sorted(mine))
        self.losses.append(f"{w.name}: its counts were refused")
        self.say(f"{w.name} dropped, images {indices} refused: {value}")
        earlier = [str(self.jobs[p].index) for p in w.served if p < self.next_out]
        if earlier:
            self.say(
                f"rows {', '.join(earlier)} were certified by {w.name} before; each passed its "
                "own check, but remove them (and run again) if the server is not to be trusted"
            )

    def rows(self) -> Iterator[tuple[int, Certificate | SequentialCertificate, float]]:
        """The finished certificates that are next in job order (refused images skipped)."""
        while self.next_out in self.finished or self.next_out in self.refused:
            if self.next_out in self.finished:
                cert, seconds = self.finished.pop(self.next_out)
                yield self.jobs[self.next_out].index, cert, seconds
            self.next_out += 1

    def raise_refused(self) -> None:
        """One error for the refused images, once every other row is out."""
        if self.refused:
            indices = ", ".join(str(self.jobs[p].index) for p in sorted(self.refused))
            why = "; ".join(dict.fromkeys(self.refused.values()))
            raise IntSmoothError(
                f"images {indices} are refused and have no row: {why} Every other row is kept. "
                "Run the same command again without that server to certify the refused images."
            )

    def stop(self) -> None:
        for w in self.live:
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
    facts compiled into it. The servers' counts are checked by
    :class:`~tvm_intsmooth.remote.verify.VerifiedCounts`, ``verify`` of their batches
    recomputed on this machine.
    """

    def __init__(
        self,
        artifact: str | Path,
        device: Device,
        *,
        workers: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        verify: float = DEFAULT_VERIFY,
        say: Callable[[str], None] | None = None,
    ):
        self.artifact = Path(artifact)
        meta = ArtifactMeta.from_file(self.artifact)
        meta.check_library(self.artifact)
        if check_fraction(verify):  # this machine must run one of the artifact's libraries
            verification_library(self.artifact, meta)
        self.verify = verify
        self.input_shape = meta.input_shape
        self.num_classes = meta.num_classes
        self.sigma = meta.sigma
        self.tv_bound = meta.tv_bound
        self.batch = meta.batch
        self.device = device
        self.workers = workers
        self.timeout = timeout
        self.say = say
        self._session_classifier: VerifiedCounts | None = None

    def check_n(self, n: int, start: int = 0) -> int:
        """``n`` if one stream can draw samples start..start+n-1, else an IntSmoothError."""
        return check_sample_count(n, self.batch, start)

    def counts(
        self,
        x: np.ndarray,
        n: int,
        seed: int,
        stream: int = 0,
        progress: bool | None = None,
        *,
        start: int = 0,
    ) -> np.ndarray:
        """Vote counts of samples start..start+n-1 of ``stream``, on one session of the
        device, checked (a :class:`~tvm_intsmooth.remote.verify.ForgedCounts` when they fail)."""
        if self._session_classifier is None:
            session = self.device.open()
            report = device_report(session)
            self._session_classifier = VerifiedCounts(
                load_artifact(self.artifact, session),
                load_verifier(self.artifact) if self.verify else None,
                self.verify,
                f"the RPC server {session_address(session)} ({report.get('name', 'unknown')})",
            )
        return self._session_classifier.counts(x, n, seed, stream, progress, start=start)

    def certify_many(
        self,
        jobs: Sequence[CertifyJob],
        n0: int = DEFAULT_N0,
        n: int | None = None,
        alpha: float = 0.001,
        *,
        seed: int,
        radii: Sequence[float] | None = None,
        n_max: int | None = None,
        progress: bool | None = None,
    ) -> Iterator[tuple[int, Certificate | SequentialCertificate, float]]:
        """CERTIFY of every job (sequential at ``radii`` when given), sharded over the device's
        sessions: ``(index, certificate, seconds)`` in job order (the workers show no progress
        bars)."""
        return certify_remote(
            self.artifact,
            self.device,
            jobs,
            n0=n0,
            n=n,
            alpha=alpha,
            seed=seed,
            radii=radii,
            n_max=n_max,
            workers=self.workers,
            timeout=self.timeout,
            verify=self.verify,
            say=self.say,
        )


def _server_name(report: dict, number: int) -> str:
    name, machine = report.get("name", "unknown"), report.get("machine", "?")
    return f"worker {number} ({report.get('address', 'unknown')}: {name}, {machine})"
