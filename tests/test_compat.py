"""The TVM patches of tvm_intsmooth.compat: each does what it says, and each has a test that fails
once upstream fixes what it works around (then drop the patch)."""

import inspect
import os
import platform
import select
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import tvm
from intrinsics_conv import blocked_conv
from tvm.script import ir as I
from tvm.script import tirx as T

from tvm_intsmooth import compat
from tvm_intsmooth.compat import (
    THREAD_VARIABLES,
    filtered_stderr,
    load_stock_intrinsics,
    physical_cores,
    usable_cpus,
)
from tvm_intsmooth.schedule import resolve_target
from tvm_intsmooth.schedule.intrinsics import KernelIntrin, x86

TENSORIZE = (
    b"[08:51:30] /project/src/s_tir/meta_schedule/postproc/rewrite_tensorize.cc:50: "
    b"Warning: Tensorize failed with error (not rendered)\n"
)


def test_drops_tensorize_warnings_from_this_process_and_children(capfd):
    with filtered_stderr():
        os.write(2, b"kept 1\n" + TENSORIZE)
        os.write(2, b"\rtuning 10%")
        os.write(2, b"\rtuning 20%\n")
        os.write(2, TENSORIZE[:40])  # a C++ line may arrive in pieces
        os.write(2, TENSORIZE[40:] + b"[12:00:00] another warning\n")
        subprocess.run([sys.executable, "-c", f"import os; os.write(2, {TENSORIZE!r} + b'c\\n')"])
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert err == "kept 1\n\rtuning 10%\rtuning 20%\n[12:00:00] another warning\nc\nafter\n"


def test_a_partial_line_reaches_stderr_before_the_block_ends():
    """A progress bar redraws with \\r and no newline: it must not wait for one."""
    # The real stderr is a pipe of this test's, read while the block is open (polling capfd
    # instead truncates its capture file on every read, and a write landing in between is lost).
    read_fd, write_fd = os.pipe()
    saved = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        with filtered_stderr():
            os.write(2, b"\rtuning 50%")
            deadline = time.monotonic() + 5
            seen = b""
            while b"tuning 50%" not in seen and time.monotonic() < deadline:
                ready, _, _ = select.select([read_fd], [], [], 0.1)
                if ready:
                    seen += os.read(read_fd, 4096)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(read_fd)
    assert b"tuning 50%" in seen


def test_stock_vnni_intrinsic_still_fails_to_build():
    """TVM 0.27's dot_16x4_vnni passes 16 x i32 to LLVM 22's vpdpbusd (64 x i8 operands). When
    this test fails, upstream fixed it: drop intsmooth_dot_16x4_u8i8i32_vnni and use theirs."""
    upstream = load_stock_intrinsics("x86")
    name = "intsmooth_test_upstream_dot_16x4_vnni"
    tvm.s_tir.TensorIntrin.register(
        name,
        upstream.dot_product_16x4_u8i8i32_desc,
        upstream.dot_product_16x4_u8i8i32_vnni,
        override=True,
    )
    stock = KernelIntrin(name, "avx512vnni", 16, 4, "uint8", "int8", "vpdpbusd")
    target = resolve_target("x86-vnni").target
    with pytest.raises(Exception, match=r"vpdpbusd\.512\(<16 x i32> %\w+, <16 x i32>"):
        tvm.compile(blocked_conv(stock, n=1, hw=4), target=target)
    # the stock name now holds ours, so MetaSchedule's VNNI rules get a working intrinsic
    fixed = KernelIntrin(x86.STOCK_VNNI, "avx512vnni", 16, 4, "uint8", "int8", "vpdpbusd")
    asm = tvm.compile(blocked_conv(fixed, n=1, hw=4), target=target).mod.inspect_source("asm")
    assert "vpdpbusd" in asm


def _per_row_scratch(scope: str):
    @T.prim_func(s_tir=True)
    def func(a: T.Buffer((64, 16), "int32"), b: T.Buffer((64, 16), "int32")):
        T.func_attr({"global_symbol": "main"})
        for i in T.parallel(64):
            with T.sblock("row"):
                T.reads(a[i, 0:16])
                T.writes(b[i, 0:16])
                scratch = T.sblock_alloc_buffer((16,), "int32", scope=scope)
                for j in range(16):
                    scratch[j] = a[i, j] + 1
                for j in range(16):
                    b[i, j] = scratch[j] * 2

    return func


@pytest.mark.parametrize("scope", ["local", compat.SCRATCH_SCOPE])
def test_only_global_scratch_stays_off_the_workspace_allocator(scope):
    """TVM 0.27 allocates a 64-byte "local" buffer inside a parallel loop with
    TVMBackendAllocWorkspace, once per iteration, and a "global" one on the stack. When the
    "local" case fails, upstream fixed it: SCRATCH_SCOPE may go back to "local"."""
    lib = tvm.compile(_per_row_scratch(scope), target="llvm")
    a = np.arange(64 * 16, dtype=np.int32).reshape(64, 16)
    b = tvm.runtime.tensor(np.zeros_like(a))
    lib["main"](tvm.runtime.tensor(a), b)
    np.testing.assert_array_equal(b.numpy(), (a + 1) * 2)
    workspace = "TVMBackendAllocWorkspace" in lib.mod.inspect_source("ll")
    assert workspace == (scope == "local")


def test_the_tensor_intrin_package_still_loads_every_isa():
    """load_stock_intrinsics exists because importing tvm.s_tir.tensor_intrin executes every ISA's
    intrinsics (CUDA, ROCm, Hexagon, ...). When upstream loads them lazily, import the package."""
    source = (Path(tvm.s_tir.__path__[0]) / "tensor_intrin" / "__init__.py").read_text()
    assert "from . import cuda" in source and "hexagon" in source


def test_stock_intrinsics_load_alone_under_their_own_name():
    module = load_stock_intrinsics("x86")
    assert module.__name__ == "tvm.s_tir.tensor_intrin.x86"
    assert load_stock_intrinsics("x86") is module


def _both_stacks():
    return compat._frame_stack(), inspect.stack()


def test_frame_stack_is_inspect_stack_without_the_module_lookup():
    ours, stock = _both_stacks()
    assert len(ours) == len(stock) > 5
    assert ours[0].frame is stock[0].frame and ours[0].function == "_both_stacks"
    for a, b in zip(ours, stock, strict=True):
        assert (a.frame, a.filename, a.lineno, a.function) == (
            b.frame,
            b.filename,
            b.lineno,
            b.function,
        )
        assert a.code_context == b.code_context and a.index == b.index


def test_tvm_script_entries_still_capture_the_whole_stack():
    """fast_tvmscript_stack exists because T.prim_func and I.ir_module call inspect.stack(): when
    upstream stops, drop it."""
    from tvm.script.parser.ir import entry as ir_entry
    from tvm.tirx.script.parser import entry as tir_entry

    assert "inspect.stack()" in inspect.getsource(tir_entry.prim_func)
    assert "inspect.stack()" in inspect.getsource(ir_entry.ir_module)


def _parse_with_a_closure(scale: int):
    @T.prim_func(private=True)
    def times(a: T.Buffer((4,), "int32"), b: T.Buffer((4,), "int32")):
        for i in range(4):
            b[i] = a[i] * scale

    @I.ir_module
    class Module:
        @T.prim_func
        def plus(a: T.Buffer((4,), "int32"), b: T.Buffer((4,), "int32")):
            for i in range(4):
                b[i] = a[i] + scale

    return times, Module


def test_tvm_script_parses_the_same_without_looking_up_modules(monkeypatch):
    from tvm.script.parser.ir import entry as ir_entry
    from tvm.tirx.script.parser import entry as tir_entry

    compat.fast_tvmscript_stack()
    compat.fast_tvmscript_stack()  # idempotent
    assert isinstance(tir_entry.inspect, compat._FastStackInspect)
    with monkeypatch.context() as stock:
        stock.setattr(tir_entry, "inspect", inspect)
        stock.setattr(ir_entry, "inspect", inspect)
        expected = _parse_with_a_closure(3)

    stock_getmodule = inspect.getmodule

    def no_frame_lookup(obj, *args):  # the scan of every module was per frame of the stack
        assert not inspect.isframe(obj), "inspect.getmodule called for a frame"
        return stock_getmodule(obj, *args)

    monkeypatch.setattr(inspect, "getmodule", no_frame_lookup)
    times, module = _parse_with_a_closure(3)
    tvm.ir.assert_structural_equal(times, expected[0])
    tvm.ir.assert_structural_equal(module, expected[1])
    assert "3" in module.script()


def test_tvm_still_logs_tensorize_failures_to_fd_2():
    """filtered_stderr exists for this C++ warning; when the library no longer has it, drop it."""
    library = Path(tvm.__file__).parent / "lib" / "libtvm_compiler.so"
    assert b"Tensorize failed" in library.read_bytes()


def test_tvm_rpc_listening_loop_still_ends_on_a_crashed_session():
    """keep_rpc_server_listening exists because _serving raises when a session's child dies."""
    from tvm.rpc import server

    assert "exited unsuccessfully" in inspect.getsource(server._serving)


def test_kept_listening_after_a_crashed_session(capfd):
    class FakeServer:
        @staticmethod
        def _serving(sock, addr, *args):
            raise RuntimeError("Child process 1 exited unsuccessfully with error code -11")

    class Sock:
        closed = False

        def close(self):
            self.closed = True

    sock = Sock()
    compat.keep_rpc_server_listening(FakeServer)
    FakeServer._serving(sock, ("127.0.0.1", 1))
    assert sock.closed and "ended abnormally" in capfd.readouterr().err


def test_a_patch_on_another_tvm_version_warns(monkeypatch):
    monkeypatch.setattr(tvm, "__version__", "0.99.0")
    monkeypatch.setattr(compat, "_checked", set())
    with pytest.warns(RuntimeWarning, match="written for TVM 0.27.0.*0.99.0"):
        compat.check_tvm_version("some_patch")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compat.check_tvm_version("some_patch")  # once per patch


# -- use_all_cores -----------------------------------------------------------------------------


def _python(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter without the thread variables (plus ``env``)."""
    dropped = (*THREAD_VARIABLES, "TVM_BIND_THREADS")
    clean = {k: v for k, v in os.environ.items() if k not in dropped}
    out = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


x86_with_two_cpus = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64") or (os.cpu_count() or 1) < 2,
    reason="TVM halves hardware_concurrency() only on x86; needs at least 2 CPUs to show",
)


@x86_with_two_cpus
def test_tvm_still_halves_hardware_concurrency_and_never_grows_its_pool():
    """What use_all_cores works around (TVM 0.27): without a variable, the pool is half of
    hardware_concurrency() on x86, and config_threadpool cannot grow it afterwards. When this
    fails, upstream changed its default: re-check use_all_cores, or drop it."""
    code = (
        "import tvm\n"
        "first = tvm.runtime.num_threads()\n"
        "tvm.get_global_func('runtime.config_threadpool')(0, 2 * first + 2)\n"
        "print(first, tvm.runtime.num_threads())\n"
    )
    first, after = (int(v) for v in _python(code).split())
    assert first == max(1, (os.cpu_count() or 1) // 2)
    assert after == first


def test_importing_tvm_intsmooth_gives_one_thread_per_physical_core():
    code = (
        "import os, tvm_intsmooth, tvm\n"
        "print(tvm.runtime.num_threads(), os.environ['TVM_NUM_THREADS'])\n"
    )
    threads, variable = (int(v) for v in _python(code).split())
    assert threads == variable == physical_cores(usable_cpus())


def test_importing_tvm_first_then_tvm_intsmooth_also_works():
    code = "import tvm; import tvm_intsmooth; print(tvm.runtime.num_threads())"
    assert int(_python(code)) == physical_cores()


def test_the_users_thread_variables_are_kept():
    code = "import tvm_intsmooth, tvm; print(tvm.runtime.num_threads())"
    assert _python(code, TVM_NUM_THREADS="1") == "1"
    assert _python(code, OMP_NUM_THREADS="1") == "1"


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPUs")
def test_an_affinity_mask_bounds_the_pool_and_stays_as_it_is():
    last = max(usable_cpus())
    code = (
        f"import os; os.sched_setaffinity(0, {{{last}}})\n"
        "import tvm_intsmooth, tvm\n"
        "print(tvm.runtime.num_threads(), *sorted(os.sched_getaffinity(0)))\n"
    )
    assert _python(code) == f"1 {last}"


def test_set_num_threads_lowers_the_pool():
    code = (
        "import tvm_intsmooth\n"
        "from tvm_intsmooth.compat import set_num_threads\n"
        "print(set_num_threads(1), set_num_threads(10**6))\n"
    )
    assert _python(code) == f"1 {physical_cores()}"


def test_physical_cores():
    assert physical_cores({0}) == 1
    assert 1 <= physical_cores() <= len(usable_cpus())
