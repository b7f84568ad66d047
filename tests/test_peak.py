"""benchmarks/peak.py's kernels do the multiply-accumulates they are credited with: each returns
the sum of its accumulators, which must grow by MACs-per-iteration x a x b per iteration."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import peak  # noqa: E402


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return peak.compile_kernels(tmp_path_factory.mktemp("peak"))


def test_this_cpu_has_an_int8_and_an_fp32_kernel():
    kinds = {k.kind for k in peak.available_kernels()}
    if not kinds:
        pytest.skip("no peak kernel for this CPU's architecture (x86_64 and aarch64 only)")
    assert kinds == {"int8", "fp32"}


@pytest.mark.parametrize("kernel", peak.KERNELS, ids=lambda k: k.name)
def test_kernel_counts_its_macs(lib, kernel):
    if kernel not in peak.available_kernels():
        pytest.skip(f"{kernel.name} needs {kernel.arch} with {sorted(kernel.features)}")
    if not peak.runs(lib, kernel):
        pytest.skip(f"{kernel.name}: the OS does not grant the unit it needs")
    fn, macs = peak.bind(lib, kernel)
    value = peak.OPERAND[kernel.kind]
    start = fn(0, *peak.operands(kernel.kind))  # the accumulators' distinct initial values
    for iters in (1, 37):
        assert fn(iters, *peak.operands(kernel.kind)) - start == macs * iters * value * value


def test_measure_peak_reports_the_best_kernels():
    kernels = peak.available_kernels()
    if not kernels:
        pytest.skip("no peak kernel for this CPU's architecture")
    result = peak.measure_peak([1], seconds=0.01, repeats=1)
    assert set(result.gmacs) == {k.name for k in kernels}
    vector = [k for k in kernels if k.kind == "int8" and not k.matrix]
    assert result.int8(1) == max(result.gmacs[k.name][1] for k in vector)
    matrix = [k.name for k in kernels if k.matrix and k.name in result.gmacs]
    assert result.matrix_kernel == (matrix[0] if matrix else None)
    assert result.fp32(1) > 0 and "GMAC/s" in peak.format_table(result)


@pytest.mark.parametrize("kernel", peak.KERNELS, ids=lambda k: k.name)
def test_kernel_issues_one_instruction_per_accumulator(lib, kernel):
    """The loop body holds MACs / MACs-per-instruction copies of the instruction: the compiler
    neither merged equal accumulator chains nor hoisted the products out of the loop."""
    objdump = shutil.which("objdump")
    if kernel not in peak.available_kernels() or objdump is None:
        pytest.skip(f"{kernel.name}: not this CPU's kernel, or no objdump")
    _, macs = peak.bind(lib, kernel)
    text = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", lib._name], check=True, capture_output=True, text=True
    ).stdout
    body = text.split(f"<{kernel.name}>:")[1].split("\n\n")[0]
    mnemonic = re.split(r"[ +]", kernel.instruction)[0]
    assert len(re.findall(rf"\b{mnemonic}\b", body)) == macs // kernel.instruction_macs
