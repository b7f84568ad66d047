"""Everything tvm_intsmooth patches in TVM, or reaches into TVM's internals for, in one place.

Each patch names the TVM version it was written for (:data:`TVM_VERSION`) and checks it when
applied: on another version it still applies, with a warning to re-check it. Each has a test in
tests/test_compat.py that fails once upstream fixes what it works around, so that the patch can
then be dropped.

- :func:`load_stock_intrinsics`: TVM's x86 / arm_cpu tensor-intrinsic modules loaded one by one
  by file path (``import tvm.s_tir.tensor_intrin`` parses every ISA's intrinsics: a minute).
- :func:`fast_tvmscript_stack`: TVMScript's ``T.prim_func`` / ``I.ir_module`` capture the caller's
  stack with ``inspect.stack()``, whose cost grows with stack depth x loaded modules (seconds
  per function inside a deep import of a large process): replaced by a direct frame walk.
- :func:`replace_stock_intrinsic`: our VNNI ``vpdpbusd`` intrinsic registered under TVM's name
  ``dot_16x4_vnni`` (TVM 0.27's passes ``16 x i32`` where LLVM 22 takes ``64 x i8``).
- :func:`filtered_stderr`: drops MetaSchedule's C++ "Tensorize failed" warnings from fd 2.
- :func:`keep_rpc_server_listening`: TVM's RPC listening loop survives a session that crashes.
- :func:`use_all_cores`: TVM's CPU thread pool gets one thread per physical core this process
  may run on (TVM 0.27 takes half of ``hardware_concurrency()`` on x86, ignoring the affinity
  mask): applied when ``tvm_intsmooth`` is imported; :func:`set_num_threads` lowers it later.
- :data:`SCRATCH_SCOPE`: the storage scope of small per-iteration scratch buffers (register
  tiles, the sampler's state). TVM 0.27's LowerTVMBuiltin keeps only "global" allocations under
  1 KiB on the stack; a "local" one becomes a TVMBackendAllocWorkspace/FreeWorkspace call pair
  each time the loop body that holds it runs.

This module imports nothing else of tvm_intsmooth: the RPC listener script loads it on a board.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import linecache
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType

TVM_VERSION = "0.27.0"
SCRATCH_SCOPE = "global"  # not "local": see the module docstring
_checked: set[str] = set()


def tvm_version() -> str | None:
    """The version of TVM: the loaded one, else the installed distribution's (without importing
    TVM), else None (TVM built from source and not loaded yet)."""
    if "tvm" in sys.modules:
        return str(sys.modules["tvm"].__version__)
    from importlib import metadata

    for dist in ("apache-tvm", "tvm"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(dist)
    return None


def check_tvm_version(patch: str, version: str | None = None) -> None:
    """Warn once per patch when TVM is not the version the patch was written for (``version``:
    the one to check, by default the loaded TVM's)."""
    if patch in _checked:
        return
    if version is None:
        import tvm

        version = str(tvm.__version__)
    _checked.add(patch)
    if not version.startswith(TVM_VERSION):
        warnings.warn(
            f"tvm_intsmooth's {patch} patch was written for TVM {TVM_VERSION}, but TVM "
            f"{version} is loaded: check tests/test_compat.py against this version "
            "(tvm_intsmooth pins apache-tvm==0.27.0.post1)",
            RuntimeWarning,
            stacklevel=3,
        )


_PACKAGE = "tvm.s_tir.tensor_intrin"


def load_stock_intrinsics(name: str) -> ModuleType:
    """``tvm.s_tir.tensor_intrin.<name>``, executed without the package's other modules.

    Loaded under its own module name, so that a later full import of the package (MetaSchedule's
    TuneContext does one) skips it and does not register its intrinsics over ours again.
    """
    import tvm.s_tir

    check_tvm_version("load_stock_intrinsics")
    fast_tvmscript_stack()  # the module parses its intrinsics as it runs
    full = f"{_PACKAGE}.{name}"
    if full not in sys.modules:
        path = f"{tvm.s_tir.__path__[0]}/tensor_intrin/{name}.py"
        spec = importlib.util.spec_from_file_location(full, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[full]
            raise
    return sys.modules[full]


def replace_stock_intrinsic(name: str, desc, impl) -> None:
    """Register ``desc``/``impl`` under TVM's own intrinsic ``name`` (MetaSchedule's schedule
    rules look intrinsics up by TVM's names), over TVM's registration."""
    from tvm.s_tir import TensorIntrin

    check_tvm_version("replace_stock_intrinsic")
    TensorIntrin.register(name, desc, impl, override=True)


# -- TVMScript's stack capture ---------------------------------------------------------------
_SCRIPT_ENTRIES = ("tvm.tirx.script.parser.entry", "tvm.script.parser.ir.entry")


def _frame_stack(context: int = 1) -> list[inspect.FrameInfo]:
    """``inspect.stack(context)`` for TVMScript's entry points, without its per-frame module
    lookup: the same frames, file names, line numbers, function names, and the frame's own line
    as context (what TVMScript reads: ``is_defined_in_class`` looks for a class decorator there).

    ``inspect.stack()`` resolves each frame's module, and for a frame whose file does not exist
    (``<frozen importlib._bootstrap>``, TVMScript's ``<ast>``) it scans every loaded module, several
    times per frame: inside a deep import chain of a process with ~2,300 modules (TVM, ONNX
    Runtime, PyTorch) that was about 0.3 s per parsed function: 62 s to import
    tvm_intsmooth.runtime on a 2-core AMD EPYC (Zen 3), 6 s with this.
    """
    infos = []
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        line = linecache.getline(code.co_filename, frame.f_lineno) if context > 0 else ""
        infos.append(
            inspect.FrameInfo(
                frame,
                code.co_filename,
                frame.f_lineno,
                code.co_name,
                [line] if line else None,
                0 if line else None,
            )
        )
        frame = frame.f_back
    return infos


class _FastStackInspect(ModuleType):
    """The ``inspect`` module as TVMScript's entry modules see it, with :func:`_frame_stack`."""

    stack = staticmethod(_frame_stack)

    def __getattr__(self, name: str):
        return getattr(inspect, name)


def fast_tvmscript_stack() -> None:
    """Give TVMScript's parser entry points (``T.prim_func``, ``I.ir_module``) a stack capture
    whose cost does not grow with the number of loaded modules (:func:`_frame_stack`).
    Idempotent; imports TVM's TVMScript parser."""
    for name in _SCRIPT_ENTRIES:
        module = importlib.import_module(name)
        if not isinstance(module.inspect, _FastStackInspect):
            check_tvm_version("fast_tvmscript_stack")
            module.inspect = _FastStackInspect("inspect")


HARMLESS = (re.compile(rb"rewrite_tensorize\.cc:\d+: Warning: Tensorize failed"),)


def _forward(read_fd: int, write_fd: int, patterns) -> None:
    """Copy ``read_fd`` to ``write_fd`` until EOF, without the lines that match ``patterns``.

    Text without a newline is passed on at once (progress bars redraw with ``\\r``), except a
    trailing piece that starts like a log line (``[``), which waits for the rest of its line.
    """

    def kept(line: bytes) -> bool:
        return not any(p.search(line) for p in patterns)

    pending = b""
    while chunk := os.read(read_fd, 65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = b"".join(line + b"\n" for line in lines if kept(line))
        if pending and not pending.startswith(b"["):
            out, pending = out + pending, b""
        if out:
            os.write(write_fd, out)
    if pending and kept(pending):
        os.write(write_fd, pending)


@contextlib.contextmanager
def filtered_stderr(patterns=HARMLESS) -> Iterator[None]:
    """Within the block, lines written to file descriptor 2 (by Python or C++) that match one
    of ``patterns`` are dropped; everything else reaches the real stderr unchanged.

    MetaSchedule's RewriteTensorize logs ``Tensorize failed`` for every sampled candidate whose
    tiling does not fit the intrinsic (hundreds per tuning run); C++ logging bypasses Python's
    ``logging`` and ``sys.stderr``, so only the descriptor itself can be filtered.
    """
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    thread = threading.Thread(target=_forward, args=(read_fd, saved, patterns), daemon=True)
    thread.start()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)  # drops our write end of the pipe
        # Worker processes started inside the block (MetaSchedule's builder pool) hold write
        # ends of their own: while one lives, the thread keeps forwarding for it.
        thread.join(timeout=1.0)
        if not thread.is_alive():
            os.close(read_fd)
            os.close(saved)


def keep_rpc_server_listening(server_module: ModuleType) -> None:
    """TVM's listening loop (``tvm.rpc.server._serving``) ends when a session's child process
    dies of a signal (a library that crashes): keep listening instead, as a board's server
    should."""
    check_tvm_version("keep_rpc_server_listening")
    stock = server_module._serving

    def serving(sock, addr, *args):
        cwd = os.getcwd()
        try:
            stock(sock, addr, *args)
        except RuntimeError as err:
            print(f"rpc server: the session of {addr} ended abnormally: {err}", file=sys.stderr)
            os.chdir(cwd)
            sock.close()

    server_module._serving = serving


# -- threads -----------------------------------------------------------------------------------
THREAD_VARIABLES = ("TVM_NUM_THREADS", "OMP_NUM_THREADS")  # what TVM's MaxConcurrency() reads


def usable_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity mask, where the OS has one)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def physical_cores(cpus: set[int] | None = None) -> int:
    """How many physical cores ``cpus`` (default: :func:`usable_cpus`) span: hyper-threads of
    one core count once, where Linux tells them apart
    (``/sys/devices/system/cpu/cpuN/topology/thread_siblings_list``); elsewhere each CPU is a
    core."""
    cpus = usable_cpus() if cpus is None else cpus
    cores = set()
    for cpu in cpus:
        path = f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
        try:
            with open(path) as f:
                cores.add(f.read().strip())
        except OSError:
            cores.add(f"cpu{cpu}")
    return max(1, len(cores))


def use_all_cores() -> int | None:
    """Give TVM's CPU thread pool one thread per physical core this process may run on.

    TVM 0.27 sizes its pool, when the first parallel kernel runs (or ``tvm.runtime.num_threads()``
    is called), from ``TVM_NUM_THREADS``, else ``OMP_NUM_THREADS``, else half of
    ``std::thread::hardware_concurrency()`` on x86 ("ignore hyper-threading"; the whole count
    elsewhere), and never grows it afterwards (``runtime.config_threadpool`` only lowers it).
    On a 2-vCPU machine without hyper-threads that is 1 thread, and with one thread TVM also pins
    the calling thread to CPU 0. So, unless the user set one of those variables, this sets
    ``TVM_NUM_THREADS`` to :func:`physical_cores` of the affinity mask, before any pool exists:
    it is called when ``tvm_intsmooth`` is imported (before it imports TVM). Child processes
    inherit the variable. It does not load TVM.

    A pool smaller than the machine also pins its threads to the first CPUs of the machine,
    whatever the affinity mask (a process limited to CPU 1 would be moved to CPU 0): where the
    mask is not the whole machine, ``TVM_BIND_THREADS=0`` (unless set) leaves threads where the
    OS puts them.

    Returns the thread count it set, or None where the user's variable is kept.
    """
    if any(os.environ.get(name) for name in THREAD_VARIABLES):
        return None
    version = tvm_version()
    if version is not None:
        check_tvm_version("use_all_cores", version)
    cpus = usable_cpus()
    threads = physical_cores(cpus)
    os.environ["TVM_NUM_THREADS"] = str(threads)
    if len(cpus) < (os.cpu_count() or len(cpus)):
        os.environ.setdefault("TVM_BIND_THREADS", "0")
    return threads


def set_num_threads(threads: int) -> int:
    """Run TVM's kernels in this thread on ``threads`` threads from now on (at most the pool's
    size, fixed when the pool was made: see :func:`use_all_cores`); returns the count in effect.

    ``runtime.config_threadpool(0, n)``: mode 0 (no big/little preference) with ``n`` workers.
    """
    import tvm

    check_tvm_version("set_num_threads")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if tvm.runtime.num_threads() != threads:  # (this makes the pool if there is none yet)
        tvm.get_global_func("runtime.config_threadpool")(0, threads)
    return int(tvm.runtime.num_threads())
