"""Nothing a certificate relies on is trusted blindly: the artifact's library and parameters, the
run being resumed, the sidecar, the output folder, the data. Each failure is one clear error, and
no file is lost."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from conftest import random_images
from onnx_models import first_pixel_model

from tvm_intsmooth.certify import ResultsWriter, read_results, sidecar_path
from tvm_intsmooth.cli.main import main
from tvm_intsmooth.data import save_npz
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.remote import Device, RemoteCertifier
from tvm_intsmooth.runtime import SmoothedClassifier, save_artifact

SHAPE = (1, 4, 4)
FAST = ["--n0", "10", "--n", "50", "--alpha", "0.01"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Two artifacts of one tiny model (sigma 0.12 and 0.25) and a small labelled data set."""
    root = tmp_path_factory.mktemp("trust")
    model = first_pixel_model(SHAPE)
    onnx.save(model, root / "model.onnx")
    calib = random_images(SHAPE, 16, seed=1)
    for sigma in (0.12, 0.25):
        save_artifact(smooth(model, calib, sigma, batch=25), root / f"art{sigma}")
    images = random_images(SHAPE, 4, seed=2)
    save_npz(root / "data.npz", images, np.array([0, 1, 0, 1]))
    return root


def copy_artifact(root, tmp_path, sigma=0.25):
    return shutil.copytree(root / f"art{sigma}", tmp_path / "art")


def run(*args) -> int:
    return main([str(a) for a in args])


def one_paragraph_error(capsys, code, *words):
    """A user error: exit 1, one line on stderr naming the problem, no traceback."""
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert "\n" not in err and err.startswith("intsmooth"), err
    for word in words:
        assert word in err, err
    return err


# 1. artifact integrity


def test_library_of_another_sigma_is_refused(root, tmp_path):
    """A sigma 0.12 model.so next to a sigma 0.25 meta.json (hash updated to match) certified
    radius 0.616 where the true one is 0.296."""
    art = copy_artifact(root, tmp_path)
    shutil.copy(root / "art0.12" / "model.so", art / "model.so")
    meta = json.loads((art / "meta.json").read_text())
    meta["library_sha256"] = json.loads((root / "art0.12" / "meta.json").read_text())[
        "library_sha256"
    ]
    (art / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IntSmoothError, match="sigma 0.25 \\(library: 0.12\\)"):
        SmoothedClassifier.load(art)


def test_swapped_library_fails_the_hash_check(root, tmp_path):
    art = copy_artifact(root, tmp_path)
    shutil.copy(root / "art0.12" / "model.so", art / "model.so")
    with pytest.raises(IntSmoothError, match="SHA-256"):
        SmoothedClassifier.load(art)
    with pytest.raises(IntSmoothError, match="SHA-256"):  # before anything is uploaded
        RemoteCertifier(art, Device.parse(rpc="127.0.0.1:9"))


def test_remote_certifier_describes_the_artifact_as_the_local_classifier(root):
    local = SmoothedClassifier.load(root / "art0.25")
    remote = RemoteCertifier(root / "art0.25", Device.parse(rpc="127.0.0.1:9"))
    for name in ("input_shape", "num_classes", "batch", "sigma", "tv_bound"):
        assert getattr(remote, name) == getattr(local, name), name
    for clf in (local, remote):
        with pytest.raises(IntSmoothError, match="in batches of 25"):
            clf.check_n(2**32)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("sigma", 0.5, "sigma 0.5"),
        ("K", 10, "K 10"),
        ("batch", 50, "batch 50"),
        ("num_classes", 3, "num_classes 3"),
        ("clip", "clip", "clip 'clip'"),
        ("tv_bound", 0.0, "TV bound"),
    ],
)
def test_edited_meta_json_is_refused(root, tmp_path, key, value, message):
    art = copy_artifact(root, tmp_path)
    meta = json.loads((art / "meta.json").read_text())
    meta[key] = value
    (art / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IntSmoothError, match=message):
        SmoothedClassifier.load(art)


def test_tv_bound_is_recomputed_from_the_library(root):
    clf = SmoothedClassifier.load(root / "art0.25")
    from tvm_intsmooth.smoothing.noise_table import rounded_gaussian_table

    assert clf.tv_bound == rounded_gaussian_table(0.25).tv_bound(16)
    assert clf.sigma == 0.25


# 3. resume provenance


def test_resume_refuses_other_images_at_the_same_path(root, tmp_path, capsys):
    data = tmp_path / "data.npz"
    shutil.copy(root / "data.npz", data)
    out = tmp_path / "r.tsv"
    args = ["certify", root / "art0.25", "--data", data, *FAST, "--max-images", "2", "-o", out]
    assert run(*args) == 0
    meta = json.loads(sidecar_path(out).read_text())
    assert (
        meta["artifact_sha256"]
        == json.loads((root / "art0.25/meta.json").read_text())["library_sha256"]
    )
    assert {"data_sha256", "version", "images"} <= meta.keys()
    save_npz(data, random_images(SHAPE, 4, seed=3), np.array([0, 1, 0, 1]))
    capsys.readouterr()
    one_paragraph_error(capsys, run(*args), "data_sha256", "another run")


# 4. concurrent writers, 5. stale sidecars, 6. validation first


META = {
    "seed": None,
    "sigma": 0.25,
    "n0": 10,
    "n": 50,
    "alpha": 0.01,
    "noise": "rounded_gaussian",
    "tv_bound": 0.0,
}


def test_second_writer_of_a_new_file_changes_nothing(tmp_path):
    out = tmp_path / "r.tsv"
    with ResultsWriter(out, dict(META, seed=1)):
        with pytest.raises(IntSmoothError, match="another process"):
            ResultsWriter(out, dict(META, seed=2))
        assert json.loads(sidecar_path(out).read_text())["seed"] == 1


def test_sidecar_temporary_name_is_not_shared(tmp_path):
    out = tmp_path / "r.tsv"
    (tmp_path / "r.tsv.json.tmp").mkdir()  # a file in the way of a fixed temporary name
    with ResultsWriter(out, dict(META, seed=1)):
        pass
    assert json.loads(sidecar_path(out).read_text())["seed"] == 1


def test_stale_sidecar_does_not_supply_its_seed(root, tmp_path, capsys):
    out = tmp_path / "r.tsv"
    sidecar_path(out).write_text(json.dumps(dict(META, seed=123)))
    out.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\tnA\tn\n")
    args = ["certify", root / "art0.25", "--data", root / "data.npz", *FAST, "--max-images", "1"]
    assert run(*args, "-o", out) == 0
    assert "without rows" in capsys.readouterr().out
    seed = json.loads(sidecar_path(out).read_text())["seed"]
    assert seed != 123
    assert run(*args, "-o", out) == 0  # now rows exist: the run resumes with their seed
    assert f"seed {seed} (its seed)" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [["--seed", "-1"], ["--seed", str(2**64)], ["--n", "5000000000"]])
def test_invalid_sampling_leaves_no_file(root, tmp_path, capsys, bad):
    out = tmp_path / "r.tsv"
    args = ["certify", root / "art0.25", "--data", root / "data.npz", "-o", out]
    try:
        code = run(*args, *bad)
    except SystemExit as exit_:  # argparse's usage error
        code = exit_.code
    assert code != 0
    assert not out.exists() and not sidecar_path(out).exists()
    assert run(*args, *FAST, "--max-images", "1") == 0  # and the next run is not blocked


# 7. no tracebacks


@pytest.mark.parametrize("sidecar", ["{not json", "[1, 2]"])
def test_bad_sidecar_is_one_paragraph(root, tmp_path, capsys, sidecar):
    out = tmp_path / "r.tsv"
    args = ["certify", root / "art0.25", "--data", root / "data.npz", *FAST, "--max-images", "1"]
    assert run(*args, "-o", out) == 0
    sidecar_path(out).write_text(sidecar)
    capsys.readouterr()
    one_paragraph_error(capsys, run(*args, "-o", out), "sidecar")


@pytest.mark.parametrize("key", ["noise", "target", "library_sha256", "sigma", "clip"])
def test_meta_json_without_a_key_is_one_paragraph(root, tmp_path, capsys, key):
    art = copy_artifact(root, tmp_path)
    meta = json.loads((art / "meta.json").read_text())
    del meta[key]
    (art / "meta.json").write_text(json.dumps(meta))
    for extra in ([], ["--float"]):
        code = run(
            "certify", art, "--data", root / "data.npz", *FAST, *extra, "-o", tmp_path / "r.tsv"
        )
        one_paragraph_error(capsys, code, key)


def test_float_reference_of_another_model_is_refused(root, tmp_path, capsys):
    """A different model.onnx in an artifact made `certify --float` compare with another model
    without a word: its SHA-256 is in meta.json and checked, as the library's is."""
    art = copy_artifact(root, tmp_path)
    model = onnx.load(art / "model.onnx")
    weight = model.graph.initializer[0]
    weight.CopyFrom(onnx.numpy_helper.from_array(-onnx.numpy_helper.to_array(weight), weight.name))
    onnx.save(model, art / "model.onnx")
    args = ["certify", art, "--data", root / "data.npz", *FAST, "--float", "-o", tmp_path / "r.tsv"]
    one_paragraph_error(capsys, run(*args), "model.onnx has SHA-256", "Compile the artifact")
    meta = json.loads((art / "meta.json").read_text())
    del meta["onnx_sha256"]  # an artifact of an older version
    (art / "meta.json").write_text(json.dumps(meta))
    one_paragraph_error(capsys, run(*args), "records no SHA-256 for model.onnx")
    assert not (tmp_path / "r.tsv").exists()


def test_missing_onnxruntime_is_one_paragraph(root, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    args = ["--data", root / "data.npz", *FAST, "--float", "-o", tmp_path / "r.tsv"]
    one_paragraph_error(capsys, run("certify", root / "art0.25", *args), "onnxruntime")


@pytest.mark.parametrize("command", ["certify", "predict"])
def test_output_in_a_missing_folder_is_one_paragraph(root, tmp_path, capsys, command):
    out = tmp_path / "no_such_folder" / "r.tsv"
    code = run(command, root / "art0.25", "--data", root / "data.npz", "--n", "20", "-o", out)
    one_paragraph_error(capsys, code, "does not exist")
    assert not out.parent.exists()


# 8. no data loss


def test_compile_refuses_a_folder_it_did_not_write(root, tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("my notes")
    args = ["compile", root / "model.onnx", "--sigma", "0.25", "--calib", root / "data.npz"]
    one_paragraph_error(capsys, run(*args, "-o", notes), "--force")
    assert (notes / "todo.txt").read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]  # no temporary left
    art = copy_artifact(root, tmp_path)
    assert run(*args, "--batch", "10", "-o", art) == 0  # an artifact of ours is replaced
    assert json.loads((art / "meta.json").read_text())["batch"] == 10
    assert run(*args, "--force", "-o", notes) == 0
    assert not (notes / "todo.txt").exists() and (notes / "model.so").is_file()


def test_compile_over_an_artifact_keeps_the_users_files(root, tmp_path):
    """Replacing an artifact of ours keeps every file that is not one of its own."""
    art = copy_artifact(root, tmp_path)
    (art / "notes.txt").write_text("my notes")
    (art / "plots").mkdir()
    (art / "plots" / "radii.png").write_bytes(b"png")
    args = ["compile", root / "model.onnx", "--sigma", "0.25", "--calib", root / "data.npz"]
    assert run(*args, "--batch", "10", "-o", art) == 0
    assert json.loads((art / "meta.json").read_text())["batch"] == 10
    assert (art / "notes.txt").read_text() == "my notes"
    assert (art / "plots" / "radii.png").read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no temporary left


def test_failed_compile_keeps_the_old_artifact(root, tmp_path, monkeypatch):
    import tvm_intsmooth.runtime.smoothed_classifier as sc

    art = copy_artifact(root, tmp_path)
    before = {p.name: p.read_bytes() for p in art.iterdir()}

    def broken_export(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sc, "export", broken_export)
    smoothed = smooth(first_pixel_model(SHAPE), random_images(SHAPE, 8, seed=1), 0.5, batch=5)
    with pytest.raises(OSError, match="disk full"):
        save_artifact(smoothed, art)
    assert {p.name: p.read_bytes() for p in art.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no temporary folder left


# 9. labels the model cannot have


def test_labels_beyond_the_class_count_are_refused(root, tmp_path, capsys):
    save_npz(tmp_path / "bad.npz", random_images(SHAPE, 2, seed=4), np.array([0, 2]))
    code = run(
        "certify", root / "art0.25", "--data", tmp_path / "bad.npz", *FAST, "-o", tmp_path / "r.tsv"
    )
    one_paragraph_error(capsys, code, "label 2", "0..1")


# 12. small ones


def test_predict_output_has_a_sidecar_with_the_seed(root, tmp_path, capsys):
    out = tmp_path / "p.tsv"
    assert (
        run("predict", root / "art0.25", "--data", root / "data.npz", "--n", "30", "-o", out) == 0
    )
    meta = json.loads(sidecar_path(out).read_text())
    assert f"seed {meta['seed']}," in capsys.readouterr().out
    assert meta["n"] == 30 and meta["procedure"] == "predict" and "data_sha256" in meta


def test_report_marks_a_partial_run(root, tmp_path, capsys):
    out = tmp_path / "r.tsv"
    args = ["certify", root / "art0.25", "--data", root / "data.npz", *FAST, "--seed", "5"]
    assert run(*args, "-o", out) == 0
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:3]) + "\n")  # interrupted after 2 of 4 images
    capsys.readouterr()
    assert run("report", out) == 0
    assert "partial: 2 of 4" in capsys.readouterr().out
    assert len(read_results(out).rows) == 2
