"""ScalarConstantsAsTensors: the golden rewrite, and what it is for: the kernels of the bundled
ResNet-20 (its residual adds requantize by per-tensor scalars) are the same PrimFuncs, hence
the same tuned-database key, whatever the calibration images and sigma."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from tvm_intsmooth.assets import ASSETS
from tvm_intsmooth.data import load_npz
from tvm_intsmooth.importer import import_onnx
from tvm_intsmooth.pipeline.phases import fused_module
from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.schedule.database import workload_key
from tvm_intsmooth.transform.scalar_constants_as_tensors import ScalarConstantsAsTensors

MULT, SHIFT = np.int64(1677815064), np.int64(31)


def test_scalar_operands_of_binary_ops_become_one_element_tensors():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3), "int64")) -> R.Tensor((2, 3), "int64"):
            with R.dataflow():
                a = R.multiply(x, R.const(MULT, "int64"))
                b = R.right_shift(a, R.const(SHIFT, "int64"))
                c = R.add(R.const(1, "int64"), R.const(2, "int64"))  # scalar op scalar: kept
                d = R.add(b, c)
                R.output(d)
            return d

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3), "int64")) -> R.Tensor((2, 3), "int64"):
            with R.dataflow():
                a = R.multiply(x, R.const(np.array([MULT]), "int64"))
                b = R.right_shift(a, R.const(np.array([SHIFT]), "int64"))
                c = R.add(R.const(1, "int64"), R.const(2, "int64"))
                d = R.add(b, c)
                R.output(d)
            return d

    tvm.ir.assert_structural_equal(ScalarConstantsAsTensors()(Before), Expected)


@pytest.mark.slow
def test_bundled_resnet20_kernels_do_not_depend_on_calibration_or_sigma():
    model = import_onnx(ASSETS / "models" / "fashion_mnist32_resnet20_sigma025.onnx")
    images, _ = load_npz(ASSETS / "data" / "fashion_mnist32_test500.npz")
    keys = {
        workload_key(fused_module(smooth(model, calib, sigma, batch=100).mod, "x86-vnni"))
        for calib, sigma in ((images[:100], 0.25), (images[100:200], 0.25), (images[:100], 0.12))
    }
    assert len(keys) == 1
