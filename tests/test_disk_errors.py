"""A read-only output folder or a full disk is one paragraph in every command: which file,
which error, and what was kept; no traceback, nothing lost.

The tests run as root in CI, where file modes do not stop writes, so a read-only folder is
simulated: every way Python opens, creates or renames a file for writing under it fails with
EROFS, as the kernel would. A full disk fails the write of a results row with ENOSPC.
"""

from __future__ import annotations

import builtins
import errno
import io
import os

import numpy as np
import onnx
import pytest
from conftest import random_images
from fake_tuning import FakeBuilder, FakeRunner
from onnx_models import conv_model, first_pixel_model
from tvm.s_tir import meta_schedule as ms

import tvm_intsmooth.certify.results_writer as results_writer
import tvm_intsmooth.pipeline.tune as tune_module
from tvm_intsmooth.certify import sidecar_path
from tvm_intsmooth.cli.main import main
from tvm_intsmooth.data import save_npz
from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.runtime import save_artifact

SHAPE = (1, 4, 4)
FAST = ["--n0", "10", "--n", "50", "--alpha", "0.01"]
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("disk")
    model = first_pixel_model(SHAPE)
    onnx.save(model, root / "model.onnx")
    onnx.save(conv_model(), root / "conv.onnx")
    save_artifact(smooth(model, random_images(SHAPE, 16, seed=1), 0.25, batch=25), root / "art")
    save_npz(root / "data.npz", random_images(SHAPE, 4, seed=2), np.array([0, 1, 0, 1]))
    save_npz(root / "conv.npz", random_images((1, 12, 12), 16, seed=3), np.zeros(16, np.int64))
    assert main(["certify", str(root / "art"), "--data", str(root / "data.npz"), *FAST,
                 "-o", str(root / "r.tsv")]) == 0  # fmt: skip
    return root


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A folder under which nothing can be created, written or renamed (EROFS)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    prefix = str(folder)

    def inside(path) -> bool:
        return not isinstance(path, int) and os.path.abspath(os.fsdecode(path)).startswith(prefix)

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    def guard(real, writes):
        def call(path, *args, **kwargs):
            if inside(path) and writes(*args, **kwargs):
                refuse(path)
            return real(path, *args, **kwargs)

        return call

    def writing_mode(mode="r", *args, **kwargs) -> bool:
        return any(c in mode for c in "wax+")

    monkeypatch.setattr(os, "open", guard(os.open, lambda flags, *a, **k: flags & WRITE_FLAGS))
    monkeypatch.setattr(os, "mkdir", guard(os.mkdir, lambda *a, **k: True))
    monkeypatch.setattr(builtins, "open", guard(builtins.open, writing_mode))
    monkeypatch.setattr(io, "open", guard(io.open, writing_mode))
    for name in ("replace", "rename"):
        real = getattr(os, name)
        monkeypatch.setattr(
            os, name, lambda src, dst, *a, _real=real, **k: (
                refuse(dst) if inside(dst) or inside(src) else _real(src, dst, *a, **k)
            )
        )  # fmt: skip
    return folder


def one_paragraph(capsys, code, *words) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert "\n" not in err and "Traceback" not in err and err.startswith("intsmooth"), err
    for word in words:
        assert word.lower() in err.lower(), err
    return err


def commands(root, out):
    compile_ = ["compile", root / "model.onnx", "--sigma", "0.25", "--calib", root / "data.npz"]
    tune = ["tune", root / "conv.onnx", "--sigma", "0.5", "--calib", root / "conv.npz"]
    tune += ["--target", "x86-vnni", "--batch", "10", "--trials", "4", "--trials-per-iter", "2"]
    return {
        "certify": (["certify", root / "art", "--data", root / "data.npz", *FAST],
                    out / "r.tsv", "every row written before is kept"),
        "predict": (["predict", root / "art", "--data", root / "data.npz", "--n", "20"],
                    out / "p.tsv", "an earlier file at -o is unchanged"),
        "compile": (compile_, out / "art", "an earlier artifact at -o is unchanged"),
        "quantize": (["quantize", root / "model.onnx", "--calib", root / "data.npz"],
                     out / "q.zip", "an earlier file at -o is unchanged"),
        "tune": (tune, out / "db", "nothing saved before is lost"),
        "demo": (["demo", "--max-images", "1", "--n", "20"], out / "demo", "are kept"),
        "report": (["report", root / "r.tsv", "--png"], out / "plot.png", "cannot write the plot"),
    }  # fmt: skip


@pytest.mark.parametrize(
    "command", ["certify", "predict", "compile", "quantize", "tune", "demo", "report"]
)
def test_read_only_output_folder_is_one_paragraph(command, root, read_only, capsys, monkeypatch):
    monkeypatch.setattr(tune_module, "default_builder", lambda spec: FakeBuilder())
    monkeypatch.setattr(ms.runner, "LocalRunner", lambda **kwargs: FakeRunner())
    args, out, kept = commands(root, read_only)[command]
    flag = [] if command == "report" else ["-o"]
    code = main([str(a) for a in ["-q", *args, *flag, out]])
    err = one_paragraph(capsys, code, str(read_only), "Read-only file system", kept)
    assert not any(read_only.iterdir()), err  # nothing half-written left behind


def test_full_disk_keeps_the_rows_written_and_resumes(root, tmp_path, capsys, monkeypatch):
    """ENOSPC while the second row is written: one paragraph naming the results file; the first
    row is kept, and the same command resumes after it once there is space."""
    out = tmp_path / "r.tsv"
    args = ["-q", "certify", str(root / "art"), "--data", str(root / "data.npz"), *FAST]
    args += ["-o", str(out)]
    args += ["--seed", "7"]
    write, calls = results_writer._write_all, []

    def full_after_first_row(fd, data):
        calls.append(data)
        if len(calls) == 4:  # sidecar, header, row 0, row 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(fd, data)

    monkeypatch.setattr(results_writer, "_write_all", full_after_first_row)
    one_paragraph(capsys, main(args), str(out), "No space left on device (ENOSPC)", "resumes")
    assert len(out.read_text().splitlines()) == 2 and sidecar_path(out).is_file()
    monkeypatch.setattr(results_writer, "_write_all", write)
    assert main(args) == 0
    assert "1 rows already done" in capsys.readouterr().out
    assert [line.split("\t")[0] for line in out.read_text().splitlines()[1:]] == list("0123")
