"""The smaller findings of the second trust review (issue 20, item 7), one test each.

Elsewhere: `emulate-pi --port 99999/0` and a tracker that is not up yet (test_rpc_safety.py),
`compile -o` over an artifact keeps the user's files (test_trust.py), `intsmooth -q tune` shows
no progress bar (test_tune_output.py).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import random_images
from onnx_models import GraphBuilder, first_pixel_model
from rpc_servers import free_port

from tvm_intsmooth.certify import sidecar_path
from tvm_intsmooth.cli.main import main
from tvm_intsmooth.data import save_npz
from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.runtime import save_artifact

SHAPE = (1, 4, 4)
FAST = ["--n0", "10", "--n", "50", "--alpha", "0.01"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    model = first_pixel_model(SHAPE)
    save_artifact(smooth(model, random_images(SHAPE, 16, seed=1), 0.25, batch=25), root / "art")
    save_npz(root / "data.npz", random_images(SHAPE, 4, seed=2), np.array([0, 1, 0, 1]))
    save_npz(root / "empty.npz", np.zeros((0, *SHAPE), np.uint8), np.zeros(0, np.int64))
    return root


def one_paragraph(capsys, code, *words) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert "\n" not in err and "Traceback" not in err and err.startswith("intsmooth"), err
    for word in words:
        assert word in err, err
    return err


@pytest.mark.parametrize("command", ["certify", "predict"])
def test_empty_data_is_an_error_and_writes_nothing(command, root, tmp_path, capsys):
    """An empty npz exited 0 with a header-only result."""
    out = tmp_path / "r.tsv"
    args = [command, root / "art", "--data", root / "empty.npz", *FAST[2:], "-o", out]
    one_paragraph(capsys, main([str(a) for a in args]), "no image to run on")
    assert not out.exists() and not sidecar_path(out).exists()


@pytest.mark.parametrize("option", ["--max-images", "--max", "--skip"])
def test_zero_images_or_skip_is_a_usage_error(option, root, tmp_path, capsys):
    args = ["certify", root / "art", "--data", root / "data.npz", option, "0", "-o", tmp_path / "r"]
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in args])
    assert exit_.value.code == 2 and "must be >= 1" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_failed_remote_start_leaves_no_file(root, tmp_path, capsys):
    """A server that never comes up left a header-only TSV and its sidecar."""
    out = tmp_path / "r.tsv"
    args = ["certify", root / "art", "--data", root / "data.npz", *FAST, "-o", out]
    args += ["--rpc", f"127.0.0.1:{free_port()}", "--timeout", "5", "--verify", "0"]
    assert main(["-q", *map(str, args)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no server of the RPC server" in err.splitlines()[-1]
    assert not out.exists() and not sidecar_path(out).exists()


def test_zero_std_names_the_operator_and_the_constant(tmp_path, capsys):
    """A normalization with std 0 printed 32 NaNs (a requantization multiplier) and named no
    layer."""
    g = GraphBuilder((1, 12, 12), seed=1)
    x = g.relu(g.conv(g.normalize("input", [0.3], [0.0]), 32))
    onnx.save(g.build(g.gemm(g.flatten(g.max_pool(x)), 10)), tmp_path / "zero_std.onnx")
    save_npz(tmp_path / "calib.npz", random_images((1, 12, 12), 8, seed=1), np.zeros(8, np.int64))
    args = ["compile", tmp_path / "zero_std.onnx", "--sigma", "0.25", "--calib"]
    args += [tmp_path / "calib.npz", "-o", tmp_path / "art"]
    err = one_paragraph(capsys, main([str(a) for a in args]), "relax.divide", "1 zero(s)")
    assert "nan nan" not in err and not (tmp_path / "art").exists()
