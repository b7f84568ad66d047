"""Threads as users run them: one per physical core by default (compat.use_all_cores), and
``threads=`` / ``--threads N`` for certify, predict, bench and demo; the counts are the same
for every thread count, and the count used is in the sidecar and in bench's report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import random_images
from onnx_models import conv_model

from tvm_intsmooth.cli.main import main as intsmooth
from tvm_intsmooth.compat import physical_cores
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.runtime import FloatSmoothedClassifier, SmoothedClassifier, save_artifact

SHAPE = (1, 12, 12)


@pytest.fixture(scope="module")
def smoothed():
    return smooth(conv_model(), random_images(SHAPE, 32, seed=1), 0.5, batch=16)


@pytest.fixture(scope="module")
def artifact(smoothed, tmp_path_factory):
    return save_artifact(smoothed, tmp_path_factory.mktemp("threads") / "conv")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "images.npz"
    np.savez(path, x=random_images(SHAPE, 2, seed=3), y=np.zeros(2, np.int64))
    return path


def test_default_is_one_thread_per_physical_core_and_counts_do_not_depend_on_threads(smoothed):
    image = random_images(SHAPE, 1, seed=4)[0]
    default = SmoothedClassifier.from_model(smoothed)
    assert default.threads == physical_cores()
    one = SmoothedClassifier.from_model(smoothed, threads=1)
    assert one.threads == 1
    counts = [c.counts(image, 100, seed=7, stream=2) for c in (one, default, one)]
    np.testing.assert_array_equal(counts[0], counts[1])
    np.testing.assert_array_equal(counts[0], counts[2])


def test_threads_must_be_positive(smoothed):
    with pytest.raises(IntSmoothError, match="threads"):
        SmoothedClassifier.from_model(smoothed, threads=0)


def test_float_reference_reports_its_threads(artifact):
    assert FloatSmoothedClassifier.from_artifact(artifact, threads=1).threads == 1
    assert FloatSmoothedClassifier.from_artifact(artifact).threads == physical_cores()


def test_certify_threads_go_to_the_sidecar_and_a_run_resumes_with_other_threads(
    artifact, data, tmp_path
):
    out = tmp_path / "results.tsv"
    argv = ["certify", str(artifact), "--data", str(data), "--n0", "16", "--n", "48", "-q"]
    argv += ["--seed", "5", "-o", str(out)]
    assert intsmooth([*argv, "--threads", "1"]) == 0
    sidecar = json.loads(out.with_name("results.tsv.json").read_text())
    assert sidecar["threads"] == 1
    rows = out.read_text().splitlines()[1:]
    assert [r.split("\t")[0] for r in rows] == ["0", "1"]
    assert intsmooth([*argv, "--threads", "2"]) == 0  # resumes: threads are not the results'
    assert out.read_text().splitlines()[1:] == rows


def test_bench_prints_its_threads(artifact, capsys):
    assert intsmooth(["bench", str(artifact), "--n", "16", "--repeat", "1", "--threads", "1"]) == 0
    assert "threads:    1" in capsys.readouterr().out
