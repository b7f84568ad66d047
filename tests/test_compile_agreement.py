"""`intsmooth compile` reports what it deploys: the agreement of the noisy-calibrated int16 base
classifier with the float model on noisy held-out images, and a dropped final softmax."""

from __future__ import annotations

import numpy as np
import onnx
from onnx_models import GraphBuilder

from tvm_intsmooth.data import save_npz
from tvm_intsmooth.runtime.agreement import held_out_images


def _data(path, n: int, shape=(1, 8, 8)):
    x = np.random.default_rng(3).integers(0, 256, (n, *shape), dtype=np.uint8)
    save_npz(path, x, np.zeros(n, np.int64))
    return x


def test_held_out_images_are_the_ones_after_calibration(tmp_path):
    x = _data(tmp_path / "d.npz", 30)
    images, where = held_out_images(tmp_path / "d.npz", 24)
    np.testing.assert_array_equal(images, x[24:])
    assert "6 held-out images" in where
    images, where = held_out_images(tmp_path / "d.npz", 30)
    np.testing.assert_array_equal(images, x)
    assert "the calibration images" in where


def test_compile_prints_the_deployed_agreement_and_the_dropped_softmax(tmp_path, capsys):
    from tvm_intsmooth.cli.main import main

    g = GraphBuilder((1, 8, 8), seed=7)
    x = g.relu(g.conv("input", 4))
    logits = g.gemm(g.flatten(x), 3)
    onnx.save(g.build(g.node("Softmax", [logits], (3,), axis=1)), tmp_path / "m.onnx")
    _data(tmp_path / "d.npz", 40)
    args = ["compile", str(tmp_path / "m.onnx"), "--sigma", "0.25", "--calib"]
    args += [str(tmp_path / "d.npz"), "--calib-images", "24", "--batch", "8", "-q"]
    assert main([*args, "-o", str(tmp_path / "art"), "--schedules", "none"]) == 0
    out = capsys.readouterr().out
    assert "note: the final softmax was dropped" in out
    line = next(w for w in out.splitlines() if w.startswith("top-1 agreement float vs integer"))
    assert "16 held-out images" in line and "noisy calibration, int16 noisy pixels" in line
    agreement = float(line.split(": ")[1].split("%")[0])
    assert 0 <= agreement <= 100
