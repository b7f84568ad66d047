"""SmoothedClassifier: compiled vote counts against the numpy reference, determinism, checks.

The reference (:func:`reference_counts`) evaluates the same smoothed graph with the numpy integer
interpreter and draws the noise with the numpy Philox sampler, so equal counts mean that the
compiled noise, clipping, quantized classifier, argmax and vote masking are all bit-exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import random_images
from onnx_models import conv_model

from tvm_intsmooth.analysis import check_integer_only
from tvm_intsmooth.errors import DataError, IntSmoothError
from tvm_intsmooth.importer import import_onnx
from tvm_intsmooth.pipeline.build import lower
from tvm_intsmooth.pipeline.calibrate import (
    CALIBRATION_SEED,
    calibration_stream,
    noisy_calibration,
)
from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.runtime import ArtifactMeta, SmoothedClassifier, load_artifact, save_artifact
from tvm_intsmooth.runtime.artifact import ARTIFACT_FORMAT
from tvm_intsmooth.smoothing.noise_sampler import sample_noise_numpy
from tvm_intsmooth.smoothing.noise_table import rounded_gaussian_table
from tvm_intsmooth.smoothing.reference import reference_counts

SIGMA = 0.5  # large enough that the votes spread over several classes
SHAPE = (1, 12, 12)


@pytest.fixture(scope="module")
def imported():
    return import_onnx(conv_model())


@pytest.fixture(scope="module")
def calibration():
    return random_images(SHAPE, 64, seed=1)


@pytest.fixture(scope="module")
def image():
    """An image with saturated pixels at both ends, so that clipping matters."""
    img = random_images(SHAPE, 1, seed=5)[0]
    img[0, :3] = 0
    img[0, -3:] = 255
    return img


@pytest.fixture(scope="module")
def smoothed_by_batch(imported, calibration):
    """batch -> SmoothedModel, built on demand and shared within the module."""
    cache = {}

    def get(batch: int):
        if batch not in cache:
            cache[batch] = smooth(imported, calibration, SIGMA, batch=batch)
        return cache[batch]

    return get


@pytest.fixture(scope="module")
def classifier_by_batch(smoothed_by_batch):
    cache = {}

    def get(batch: int) -> SmoothedClassifier:
        if batch not in cache:
            cache[batch] = SmoothedClassifier.from_model(smoothed_by_batch(batch))
        return cache[batch]

    return get


@pytest.fixture(scope="module")
def artifact(smoothed_by_batch, tmp_path_factory):
    return save_artifact(smoothed_by_batch(100), tmp_path_factory.mktemp("artifact") / "conv")


@pytest.mark.parametrize(
    ("seed", "stream", "n"),
    [
        (0, 0, 40),
        (12345, 2**32 + 1, 23),  # a stream that needs its high word
        (2**63 + 5, 3, 40),  # a seed that needs its top bit
        (2**64 - 1, 2**64 - 1, 9),
    ],
)
def test_counts_equal_numpy_reference(
    smoothed_by_batch, classifier_by_batch, image, seed, stream, n
):
    counts = classifier_by_batch(7).counts(image, n, seed=seed, stream=stream)
    expected = reference_counts(smoothed_by_batch(7), image, n, seed, stream)
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum() == n


@pytest.mark.parametrize("clip", ["none", "clip"])
def test_noisy_calibration_is_the_deployed_noise(calibration, clip):
    """Calibration sees each image once, plus the rounded Gaussian the compiled sampler draws
    (calibration streams), clipped only under the "clip" policy; compiles are reproducible."""
    table = rounded_gaussian_table(SIGMA)
    batches = list(noisy_calibration(calibration, SHAPE, table, clip, batch_size=24))
    assert [len(b) for b in batches] == [24, 24, 16]
    coords = int(np.prod(SHAPE))
    for number, batch in enumerate(batches):
        clean = calibration[24 * number : 24 * number + len(batch)]
        stream = calibration_stream(number)
        noise = sample_noise_numpy(table, CALIBRATION_SEED, stream, 0, len(batch), coords)
        expected = clean.astype(np.int64) + noise.reshape(clean.shape)
        if clip == "clip":
            expected = np.clip(expected, 0, 255)
        assert batch.dtype == np.int16
        np.testing.assert_array_equal(batch, expected)
        assert (expected.min() < 0) == (clip == "none")
    again = noisy_calibration(calibration, SHAPE, table, clip, batch_size=24)
    for first, second in zip(batches, again, strict=True):
        np.testing.assert_array_equal(first, second)


def test_noisy_calibration_checks_images_up_front():
    table = rounded_gaussian_table(SIGMA)
    with pytest.raises(DataError, match="calibration data"):
        noisy_calibration(np.zeros((4, 1, 5, 5), np.uint8), SHAPE, table, "none")


def test_clipped_counts_equal_numpy_reference(
    imported, calibration, image, smoothed_by_batch, classifier_by_batch
):
    """The "clip" policy (noisy pixels clamped to 0..255) is bit-exact too, and it matters here:
    the image has saturated pixels, so clipped and unclipped votes differ."""
    clipped = smooth(imported, calibration, SIGMA, batch=16, clip="clip")
    counts = SmoothedClassifier.from_model(clipped).counts(image, 64, seed=3)
    np.testing.assert_array_equal(counts, reference_counts(clipped, image, 64, 3))
    assert smoothed_by_batch(7).clip == "none"  # the default, shared with the other tests
    assert not np.array_equal(counts, classifier_by_batch(7).counts(image, 64, 3))


def test_reference_comparison_sees_several_classes(classifier_by_batch, image):
    """The votes spread over classes, so equal counts compare more than one constant answer."""
    counts = classifier_by_batch(7).counts(image, 40, seed=0)
    assert np.count_nonzero(counts) >= 2


def test_counts_depend_on_seed_and_stream(classifier_by_batch, image):
    sc = classifier_by_batch(100)
    base = sc.counts(image, 300, seed=1, stream=0)
    assert not np.array_equal(base, sc.counts(image, 300, seed=2, stream=0))
    assert not np.array_equal(base, sc.counts(image, 300, seed=1, stream=1))


def test_counts_do_not_depend_on_batch_size(classifier_by_batch, image):
    n, seed, stream = 1000, 2**63 + 99, 2**32 + 7
    by_batch = {b: classifier_by_batch(b).counts(image, n, seed, stream) for b in (1, 7, 100, 1000)}
    for batch, counts in by_batch.items():
        np.testing.assert_array_equal(counts, by_batch[100], err_msg=f"batch {batch}")
    assert by_batch[100].sum() == n


def test_prefix_of_samples_is_a_sub_count(classifier_by_batch, image):
    """Samples 0..249 are among samples 0..999: every class count can only grow."""
    sc = classifier_by_batch(100)
    small, large = sc.counts(image, 250, seed=3), sc.counts(image, 1000, seed=3)
    assert np.all(small <= large) and small.sum() == 250


_COUNTS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from tvm_intsmooth.runtime import SmoothedClassifier
    image = np.array(json.loads(sys.argv[2]), np.uint8)
    counts = SmoothedClassifier.load(sys.argv[1]).counts(image, 1000, seed=2**63 + 1, stream=5)
    print(json.dumps(counts.tolist()))
    """
)


@pytest.mark.parametrize("threads", [1, 2])
def test_counts_do_not_depend_on_thread_count(artifact, image, threads):
    env = {**os.environ, "TVM_NUM_THREADS": str(threads)}
    args = [sys.executable, "-c", _COUNTS_SCRIPT, str(artifact), json.dumps(image.tolist())]
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=True)
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    expected = SmoothedClassifier.load(artifact).counts(image, 1000, seed=2**63 + 1, stream=5)
    np.testing.assert_array_equal(counts, expected)


def test_artifact_round_trip(artifact, classifier_by_batch, image):
    loaded = load_artifact(artifact)
    in_memory = classifier_by_batch(100)
    np.testing.assert_array_equal(
        loaded.counts(image, 250, seed=42, stream=2), in_memory.counts(image, 250, 42, 2)
    )
    assert loaded.meta["sigma"] == SIGMA and loaded.meta["batch"] == 100
    assert loaded.input_shape == SHAPE and loaded.num_classes == 10
    assert (artifact / "model.onnx").is_file()


def test_meta_json_is_the_typed_meta(artifact):
    meta = ArtifactMeta.from_file(artifact)
    assert json.loads((artifact / "meta.json").read_text()) == meta.to_dict()
    assert meta.format == ARTIFACT_FORMAT and meta.input_shape == SHAPE and meta.batch == 100
    assert meta.check_library(artifact) == artifact / "model.so"
    assert SmoothedClassifier.load(artifact).meta == meta.to_dict()


def test_artifact_this_machine_cannot_run_is_refused_up_front(artifact, monkeypatch):
    """Its target's instructions (or AMX's grant) missing here: a clear error naming the
    target and what to do, not an illegal instruction when a kernel runs."""
    from tvm_intsmooth.runtime import host_library

    target = ArtifactMeta.from_file(artifact).resolved_target
    if target is None:
        pytest.skip("this machine fits no bundled target: its artifacts are not checked")
    monkeypatch.setattr(host_library, "host_can_run", lambda name: name != target)
    with pytest.raises(IntSmoothError, match=f"built for {target}, which this machine cannot"):
        SmoothedClassifier.load(artifact)
    monkeypatch.setattr(host_library, "host_can_run", lambda name: True)
    assert SmoothedClassifier.load(artifact).batch == 100


def test_smoothed_module_is_integer_only(smoothed_by_batch):
    mod = smoothed_by_batch(7).mod
    assert check_integer_only(mod) == []
    assert check_integer_only(lower(mod)) == []


@pytest.mark.parametrize(
    "bad_image",
    [
        np.zeros((1, 12, 11), np.uint8),  # wrong shape
        np.zeros((2, 1, 12, 12), np.uint8),  # a batch of two images
        np.zeros(SHAPE, np.float32),  # float dtype
        np.full(SHAPE, 300, np.int64),  # pixel above 255
        np.full(SHAPE, -1, np.int16),  # pixel below 0
    ],
)
def test_bad_image_raises_data_error(classifier_by_batch, bad_image):
    with pytest.raises(DataError):
        classifier_by_batch(7).counts(bad_image, 10, seed=1)


def test_int_pixels_in_range_are_accepted(classifier_by_batch, image):
    sc = classifier_by_batch(7)
    wide = image.astype(np.int64).reshape(1, *SHAPE)
    np.testing.assert_array_equal(sc.counts(wide, 20, seed=4), sc.counts(image, 20, seed=4))


@pytest.mark.parametrize("n", [0, -5, 2.5, 10.0, "10", True, None])
def test_bad_n_is_rejected(classifier_by_batch, image, n):
    with pytest.raises(IntSmoothError, match="n must be"):
        classifier_by_batch(7).counts(image, n, seed=1)


def test_n_past_the_last_full_counter_range_is_rejected(classifier_by_batch, image):
    # 2^32 = 7 * 613566756 + 4: with batches of 7 the last 4 sample indices cannot be drawn.
    with pytest.raises(IntSmoothError, match="4294967292"):
        classifier_by_batch(7).counts(image, 2**32, seed=1)


@pytest.mark.parametrize("seed", [1.5, "7", None, -1, 2**64, np.float64(3.0)])
def test_bad_seed_is_rejected(classifier_by_batch, image, seed):
    with pytest.raises(IntSmoothError, match="seed"):
        classifier_by_batch(7).counts(image, 10, seed=seed)


@pytest.mark.parametrize("stream", [-1, 2**64, 0.5])
def test_bad_stream_is_rejected(classifier_by_batch, image, stream):
    with pytest.raises(IntSmoothError, match="stream"):
        classifier_by_batch(7).counts(image, 10, seed=1, stream=stream)


def test_numpy_integer_seed_is_accepted(classifier_by_batch, image):
    sc = classifier_by_batch(7)
    np.testing.assert_array_equal(
        sc.counts(image, 20, seed=np.uint64(2**63 + 5)), sc.counts(image, 20, seed=2**63 + 5)
    )


def test_missing_artifact_folder_is_reported(tmp_path):
    with pytest.raises(IntSmoothError, match="not found"):
        SmoothedClassifier.load(tmp_path / "no_such_artifact")


def test_artifact_without_library_is_reported(artifact, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "meta.json").write_text((artifact / "meta.json").read_text())
    with pytest.raises(IntSmoothError, match="model.so"):
        SmoothedClassifier.load(broken)


@pytest.mark.parametrize("meta", ["{not json", "[]", '{"sigma": 0.5}'])
def test_corrupt_artifact_metadata_is_reported(artifact, tmp_path, meta):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.so").write_bytes((artifact / "model.so").read_bytes())
    (broken / "meta.json").write_text(meta)
    with pytest.raises(IntSmoothError, match="meta.json"):
        SmoothedClassifier.load(broken)
