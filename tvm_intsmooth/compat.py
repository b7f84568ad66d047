"""Everything tvm_intsmooth patches in TVM, or reaches into TVM's internals for, in one place.

Each patch names the TVM version it was written for (:data:`TVM_VERSION`) and checks it when
applied: on another version it still applies, with a warning to re-check it. Each has a test in
tests/test_compat.py that fails once upstream fixes what it works around, so that the patch can
then be dropped.

- :func:`load_stock_intrinsics`: TVM's x86 / arm_cpu tensor-intrinsic modules loaded one by one
  by file path (``import tvm.s_tir.tensor_intrin`` parses every ISA's intrinsics: a minute).
- :func:`replace_stock_intrinsic`: our VNNI ``vpdpbusd`` intrinsic registered under TVM's name
  ``dot_16x4_vnni`` (TVM 0.27's passes ``16 x i32`` where LLVM 22 takes ``64 x i8``).
- :func:`filtered_stderr`: drops MetaSchedule's C++ "Tensorize failed" warnings from fd 2.
- :func:`keep_rpc_server_listening`: TVM's RPC listening loop survives a session that crashes.

This module imports nothing else of tvm_intsmooth: the RPC listener script loads it on a board.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType

TVM_VERSION = "0.27.0"
_checked: set[str] = set()


def check_tvm_version(patch: str) -> None:
    """Warn once per patch when the loaded TVM is not the version the patch was written for."""
    import tvm

    if patch in _checked:
        return
    _checked.add(patch)
    if not str(tvm.__version__).startswith(TVM_VERSION):
        warnings.warn(
            f"tvm_intsmooth's {patch} patch was written for TVM {TVM_VERSION}, but TVM "
            f"{tvm.__version__} is loaded: check tests/test_compat.py against this version "
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
