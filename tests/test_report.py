"""Certified accuracy: a hand-computed example, the reference analyze.py formula on a written file,
the radius ceiling, the side-by-side table and the PNG plot."""

import struct
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from tvm_intsmooth.certify.cohen import ABSTAIN, certify
from tvm_intsmooth.certify.report import (
    certified_accuracy,
    default_radii,
    format_accuracy_table,
    max_certifiable_radius,
    plot_certified_accuracy,
)
from tvm_intsmooth.certify.results_tsv import CertifyResults, ResultRow, read_results
from tvm_intsmooth.certify.results_writer import ResultsWriter
from tvm_intsmooth.errors import IntSmoothError

# correct with radius 0.3, 0.6 and exactly 0.25; a wrong prediction with radius 0.9; an abstention
INT_ROWS = [
    ResultRow(0, 1, 1, 0.3, 1, 2.0),
    ResultRow(1, 2, 2, 0.6, 1, 2.0),
    ResultRow(2, 0, 5, 0.9, 0, 3.0),
    ResultRow(3, 4, ABSTAIN, 0.0, 0, 2.0),
    ResultRow(4, 4, 4, 0.25, 1, 1.0),
]
FLOAT_ROWS = [
    ResultRow(0, 1, 1, 1.2, 1, 8.0),
    ResultRow(1, 2, 2, 0.4, 1, 8.0),
    ResultRow(2, 0, ABSTAIN, 0.0, 0, 8.0),
    ResultRow(3, 4, 3, 0.1, 0, 8.0),
]


def test_certified_accuracy_hand_computed():
    radii = [0.0, 0.25, 0.5, 0.75, 1.0]
    assert certified_accuracy(INT_ROWS, radii).tolist() == [0.6, 0.6, 0.2, 0.0, 0.0]
    assert certified_accuracy(FLOAT_ROWS, radii).tolist() == [0.5, 0.5, 0.25, 0.25, 0.25]
    assert certified_accuracy(INT_ROWS, [0.3000001]).tolist() == [0.2]
    with pytest.raises(IntSmoothError, match="no results rows"):
        certified_accuracy([], radii)


def test_certified_accuracy_agrees_with_the_reference_analysis(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(7)
    meta = {"seed": 1, "sigma": 0.5, "n0": 100, "n": 1000, "alpha": 0.001}
    meta.update(noise="rounded_gaussian", tv_bound=0.0)
    path = tmp_path / "RESULTS.tsv"
    with ResultsWriter(path, meta) as writer:
        for idx in range(60):
            n_a = int(rng.integers(300, 1001))
            cert = certify(np.array([0, 9, 1]), np.array([1000 - n_a, n_a, 0]), 0.5, 0.001)
            label = int(rng.integers(0, 3))
            writer.write(ResultRow.from_certificate(idx, label, cert, 1.0))
    radii = np.array([0.0, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0])
    df = pd.read_csv(path, delimiter="\t")  # ApproximateAccuracy.at_radius of analyze.py
    expected = [(df["correct"] & (df["radius"] >= r)).mean() for r in radii]
    assert certified_accuracy(read_results(path), radii) == pytest.approx(expected, abs=0)
    assert 0.0 < expected[0] < 1.0


def test_max_certifiable_radius_and_default_radii():
    assert max_certifiable_radius(0.25, 100_000, 0.001) == pytest.approx(
        0.25 * norm.ppf(0.001 ** (1 / 100_000)), rel=1e-12
    )
    assert max_certifiable_radius(0.25, 100_000, 0.001) == pytest.approx(0.9529, abs=1e-4)
    assert max_certifiable_radius(1.0, 1000, 0.001, tv_bound=0.01) == pytest.approx(
        norm.ppf(0.001 ** (1 / 1000) - 0.01), rel=1e-12
    )
    assert max_certifiable_radius(1.0, 5, 0.001) == 0.0  # 0.001^(1/5) < 1/2: always abstains
    meta = {"sigma": 1.0, "n": 100_000, "alpha": 0.001, "tv_bound": 0.0}
    run = CertifyResults(Path("x.tsv"), meta, tuple(INT_ROWS))
    assert default_radii([run]).tolist() == [0.25 * i for i in range(16)]  # ceiling 3.81
    assert default_radii([INT_ROWS]).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert default_radii([FLOAT_ROWS, INT_ROWS], step=0.5).tolist() == [0.0, 0.5, 1.0]


def test_table_shows_runs_side_by_side():
    table = format_accuracy_table({"int8": INT_ROWS, "float32": FLOAT_ROWS})
    expected = [
        "radius             int8  float32",
        "0.00              0.600    0.500",
        "0.25              0.600    0.500",
        "0.50              0.200    0.250",
        "0.75              0.000    0.250",
        "1.00              0.000    0.250",
        "inputs                5        4",
        "abstained             1        1",
        "mean time (s)     2.000    8.000",
    ]
    assert table == "\n".join(expected) + "\n"
    with pytest.raises(IntSmoothError, match="no results"):
        format_accuracy_table({})


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_writes_a_png(tmp_path):
    from matplotlib.image import imread

    png = plot_certified_accuracy(
        {"int8": INT_ROWS, "float32": FLOAT_ROWS}, tmp_path / "acc.png", title="digits"
    )
    assert png == tmp_path / "acc.png"
    assert png.stat().st_size > 1000
    assert png_size(png) == (640, 480)
    pixels = imread(png)
    assert pixels.shape[:2] == (480, 640)
    # the two curves are drawn in matplotlib's first two colours (C0 blue, C1 orange)
    rgb = pixels[..., :3]
    blue = np.all(np.abs(rgb - np.array([0.12, 0.47, 0.71])) < 0.05, axis=-1).sum()
    orange = np.all(np.abs(rgb - np.array([1.0, 0.50, 0.05])) < 0.05, axis=-1).sum()
    assert blue > 100 and orange > 100
    with pytest.raises(IntSmoothError, match="cannot write"):
        plot_certified_accuracy({"int8": INT_ROWS}, tmp_path / "no" / "dir" / "acc.png")
