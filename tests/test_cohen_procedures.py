"""SmoothedClassifier.certify/predict own the stream rules: 2 i, 2 i + 1 and 2^63 + i.

The integer classifier's certificates are compared with Cohen et al.'s procedures applied to
vote counts that the numpy integer interpreter computes on the rule's streams, so the test
checks both the streams and the compiled counts. The CLI's rows must be the same certificates.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_images
from onnx_models import conv_model, first_pixel_model

from tvm_intsmooth.certify import certify, predict, read_results
from tvm_intsmooth.cli.main import main
from tvm_intsmooth.data import save_npz
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.importer import import_onnx
from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.runtime import FloatSmoothedClassifier, SmoothedClassifier, save_artifact
from tvm_intsmooth.runtime.cohen_procedures import (
    estimation_stream,
    predict_stream,
    selection_stream,
)
from tvm_intsmooth.smoothing.reference import reference_counts

SIGMA = 0.5
SHAPE = (1, 12, 12)


@pytest.fixture(scope="module")
def smoothed():
    return smooth(import_onnx(conv_model()), random_images(SHAPE, 32, seed=1), SIGMA, batch=16)


@pytest.fixture(scope="module")
def classifier(smoothed):
    return SmoothedClassifier.from_model(smoothed)


@pytest.fixture(scope="module")
def images():
    return random_images(SHAPE, 3, seed=9)


def test_stream_rules():
    assert [selection_stream(i) for i in (0, 1, 7)] == [0, 2, 14]
    assert [estimation_stream(i) for i in (0, 1, 7)] == [1, 3, 15]
    assert predict_stream(0) == 2**63 and predict_stream(2**62 - 1) == 2**63 + 2**62 - 1
    assert estimation_stream(2**62 - 1) == 2**63 - 1  # the last certify stream, below 2^63


@pytest.mark.parametrize(
    ("rule", "index"),
    [
        (selection_stream, 2**62),
        (estimation_stream, -1),
        (predict_stream, 2**62),
        (predict_stream, 1.0),
        (selection_stream, True),
    ],
)
def test_index_out_of_range_is_rejected(rule, index):
    with pytest.raises(IntSmoothError, match="index"):
        rule(index)


@pytest.mark.parametrize(("index", "seed"), [(0, 5), (3, 2**63 + 17)])
def test_certify_uses_streams_2i_and_2i_plus_1(smoothed, classifier, images, index, seed):
    cert = classifier.certify(images[0], 20, 60, 0.01, index=index, seed=seed)
    selection = reference_counts(smoothed, images[0], 20, seed, 2 * index)
    estimation = reference_counts(smoothed, images[0], 60, seed, 2 * index + 1)
    assert cert == certify(selection, estimation, SIGMA, 0.01, smoothed.tv_bound)


@pytest.mark.parametrize("index", [0, 11])
def test_predict_uses_stream_2_63_plus_i(smoothed, classifier, images, index):
    counts = reference_counts(smoothed, images[1], 60, 8, 2**63 + index)
    assert classifier.predict(images[1], 60, 0.3, index=index, seed=8) == predict(counts, 0.3)
    assert not np.array_equal(counts, reference_counts(smoothed, images[1], 60, 8, index))


def test_float_reference_uses_the_same_streams():
    clf = FloatSmoothedClassifier(first_pixel_model(), 0.25, batch=50)
    x = np.full((1, 4, 4), 10, np.uint8)
    cert = clf.certify(x, 30, 200, 0.01, index=4, seed=2**64 - 1)
    expected = certify(
        clf.counts(x, 30, 2**64 - 1, 8), clf.counts(x, 200, 2**64 - 1, 9), 0.25, 0.01
    )
    assert cert == expected
    counts = clf.counts(x, 200, 3, 2**63 + 4)
    assert clf.predict(x, 200, 0.01, index=4, seed=3) == predict(counts, 0.01)


def test_seed_is_required(classifier, images):
    with pytest.raises(TypeError, match="seed"):
        classifier.certify(images[0], 10, 10, 0.01)


def test_cli_rows_are_the_classifier_certificates(smoothed, classifier, images, tmp_path, capfd):
    """`intsmooth certify --skip 2` numbers rows by dataset index and certifies through
    SmoothedClassifier.certify: the same seed gives the same nA and prediction."""
    artifact = save_artifact(smoothed, tmp_path / "art")
    save_npz(tmp_path / "data.npz", images, np.arange(len(images)))
    args = ["--data", tmp_path / "data.npz", "--skip", "2", "--n0", "20", "--n", "60"]
    out = tmp_path / "rows.tsv"
    argv = ["certify", str(artifact), *map(str, args), "--seed", "77", "-o", str(out), "-q"]
    assert main(argv) == 0
    assert "certify:" not in capfd.readouterr().err  # -q: no progress bar
    rows = read_results(out).rows
    assert [r.idx for r in rows] == [0, 2]
    for row in rows:
        cert = classifier.certify(images[row.idx], 20, 60, 0.001, index=row.idx, seed=77)
        assert (row.predict, row.n_a, row.n) == (cert.prediction, cert.n_a, cert.n)
