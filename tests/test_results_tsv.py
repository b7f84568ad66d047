"""RESULTS.tsv: the reference layout (checked against the reference's own format string and
pandas), the JSON sidecar, durable row-by-row writing, resuming after a kill, and validation."""

import datetime
import json

import numpy as np
import pytest

from tvm_intsmooth.certify.cohen import ABSTAIN, certify
from tvm_intsmooth.certify.results_tsv import (
    COLUMNS,
    ResultRow,
    parse_time,
    read_results,
    sidecar_path,
)
from tvm_intsmooth.certify.results_writer import ResultsWriter
from tvm_intsmooth.errors import IntSmoothError

SIGMA, ALPHA, N0, N = 0.25, 0.001, 100, 10_000
META = {
    "seed": 2**100 + 12345,
    "sigma": SIGMA,
    "n0": N0,
    "n": N,
    "alpha": ALPHA,
    "noise": "rounded_gaussian",
    "tv_bound": 1e-4,
    "target": "llvm -mcpu=cascadelake",
    "artifact_sha256": "ab" * 32,
    "batch": 400,
}
# (label, selection counts, nA of the guess): certified, certified wrong, abstained, tiny radius
CASES = [
    (3, [0, 0, 0, 100], 9_990),
    (1, [0, 0, 97, 3], 7_000),
    (0, [60, 40, 0, 0], 4_000),
    (2, [0, 0, 100, 0], 5_200),
]


def certified_rows() -> list[ResultRow]:
    rows = []
    for idx, (label, selection, n_a) in enumerate(CASES):
        guess = int(np.argmax(selection))
        estimation = np.zeros(4, dtype=np.int64)
        estimation[guess] = n_a
        estimation[(guess + 1) % 4] = N - n_a
        cert = certify(np.array(selection), estimation, SIGMA, ALPHA, META["tv_bound"])
        rows.append(ResultRow.from_certificate(idx * 10, label, cert, 0.75 + 3661.5 * idx))
    return rows


def reference_line(row: ResultRow) -> str:
    """The line as locuslab/smoothing's certify.py prints it, with nA and n appended."""
    elapsed = str(datetime.timedelta(seconds=row.time_s))
    ref = "{}\t{}\t{}\t{:.3}\t{}\t{}".format(  # noqa: UP032 - the reference's code, verbatim
        row.idx, row.label, row.predict, row.radius, row.correct, elapsed
    )
    return f"{ref}\t{row.n_a}\t{row.n}\n"


def write_run(path, rows, meta=META):
    with ResultsWriter(path, meta) as writer:
        for row in rows:
            writer.write(row)


def test_layout_is_the_reference_one(tmp_path):
    rows = certified_rows()
    assert [row.predict for row in rows] == [3, 2, ABSTAIN, 2]
    path = tmp_path / "RESULTS.tsv"
    write_run(path, rows)
    lines = path.read_text().split("\n")
    assert lines[0] == "idx\tlabel\tpredict\tradius\tcorrect\ttime\tnA\tn"
    assert [line + "\n" for line in lines[1:-1]] == [reference_line(row) for row in rows]
    assert lines[3].split("\t")[3:6] == ["0.0", "0", "2:02:03.750000"]
    assert json.loads(sidecar_path(path).read_text()) == META


def test_pandas_reads_it_like_the_reference_analysis(tmp_path):
    pd = pytest.importorskip("pandas")
    rows = certified_rows()
    path = tmp_path / "RESULTS.tsv"
    write_run(path, rows)
    df = pd.read_csv(path, sep="\t")
    assert list(df.columns) == list(COLUMNS)
    assert df["idx"].tolist() == [row.idx for row in rows]
    assert df["predict"].tolist() == [row.predict for row in rows]
    assert df["correct"].tolist() == [1, 0, 0, 1]
    assert df["radius"].tolist() == [float(f"{row.radius:.3}") for row in rows]
    assert df["nA"].tolist() == [row.n_a for row in rows]


def test_read_back_recomputes_exact_radii(tmp_path):
    rows = certified_rows()
    path = tmp_path / "RESULTS.tsv"
    write_run(path, rows)
    results = read_results(path)
    assert results.metadata == META
    assert results.rows == tuple(rows)  # exact radii, not the printed three digits
    assert f"{rows[3].radius:.3}" != repr(rows[3].radius)


def test_parse_time_inverts_timedelta_str():
    for seconds in (0.0, 1.0, 0.000001, 59.999999, 3661.25, 90061.5, 3 * 86400 + 7.0):
        text = str(datetime.timedelta(seconds=seconds))
        assert parse_time(text) == pytest.approx(seconds, abs=1e-9), text


def test_resume_drops_a_partial_line_and_reports_done(tmp_path):
    rows = certified_rows()
    path = tmp_path / "RESULTS.tsv"
    write_run(path, rows[:3])
    with path.open("a") as f:  # killed in the middle of row 4
        f.write(reference_line(rows[3])[:9])
    with pytest.raises(IntSmoothError, match=r"line 5: incomplete"):
        read_results(path)
    meta = dict(META, sigma=np.float64(SIGMA), n=np.int64(N))  # numpy scalars compare equal
    with ResultsWriter(path, meta) as writer:
        assert writer.done == {0, 10, 20}
        assert writer.existing_rows == tuple(rows[:3])
        writer.write(rows[3])
    assert read_results(path).rows == tuple(rows)
    assert path.read_text().count("\n") == 5


def test_resume_after_a_kill_before_the_header(tmp_path):
    path = tmp_path / "RESULTS.tsv"
    write_run(path, [])
    path.write_text("idx\tlab")
    rows = certified_rows()
    with ResultsWriter(path, META) as writer:
        assert writer.done == set()
        writer.write(rows[0])
    assert read_results(path).rows == (rows[0],)


def test_resume_refuses_another_run(tmp_path):
    path = tmp_path / "RESULTS.tsv"
    write_run(path, certified_rows()[:1])
    for key, value in (("sigma", 0.5), ("seed", 7), ("target", "llvm"), ("extra", 1)):
        with pytest.raises(IntSmoothError, match=rf"{key} was .*another -o or delete"):
            ResultsWriter(path, dict(META, **{key: value}))
    sidecar_path(path).unlink()
    with pytest.raises(IntSmoothError, match="without its sidecar"):
        ResultsWriter(path, META)


def test_writer_refuses_bad_rows_and_a_second_writer(tmp_path):
    path = tmp_path / "RESULTS.tsv"
    rows = certified_rows()
    with ResultsWriter(path, META) as writer:
        writer.write(rows[0])
        with pytest.raises(ValueError, match="already"):
            writer.write(rows[0])
        with pytest.raises(IntSmoothError, match="sidecar's n"):
            writer.write(ResultRow(1, 0, ABSTAIN, 0.0, 0, 1.0, n_a=1, n=N + 1))
        with pytest.raises(IntSmoothError, match="radius"):
            writer.write(ResultRow(2, 3, 3, 1.5, 1, 1.0, n_a=rows[0].n_a, n=N))
        with pytest.raises(IntSmoothError, match="another process"):
            ResultsWriter(path, META)
    assert read_results(path).rows == (rows[0],)
    with pytest.raises(IntSmoothError, match="lacks noise"):
        ResultsWriter(tmp_path / "other.tsv", {k: v for k, v in META.items() if k != "noise"})
    with pytest.raises(IntSmoothError, match="alpha"):
        ResultsWriter(tmp_path / "other.tsv", dict(META, alpha=1.5))


def corrupt(path, line_no: int, field: int, value: str) -> None:
    lines = path.read_text().split("\n")
    fields = lines[line_no - 1].split("\t")
    fields[field] = value
    lines[line_no - 1] = "\t".join(fields)
    path.write_text("\n".join(lines))


@pytest.mark.parametrize(
    ("line_no", "field", "value", "message"),
    [
        (2, 0, "x1", "idx 'x1' is not an integer"),
        (3, 1, "1.5", "label"),
        (4, 2, "-2", "predict >= -1"),
        (2, 3, "abc", "radius 'abc'"),
        (3, 3, "0.5", "radius 0.5 but nA and n give"),
        (4, 3, "0.2", "abstention with radius"),
        (2, 4, "0", "correct = 0"),
        (5, 5, "1:2:3", "time"),
        (2, 6, "20000", "nA = 20000"),
        (4, 6, "9000", "gives radius"),
        (3, 7, "9999", "sidecar's n"),
        (5, 0, "0", "idx 0 appears a second time"),
        (1, 3, "r", "header"),
        (2, 7, "10000\textra", "9 fields"),
    ],
)
def test_corrupted_files_name_the_file_and_line(tmp_path, line_no, field, value, message):
    path = tmp_path / "RESULTS.tsv"
    write_run(path, certified_rows())
    corrupt(path, line_no, field, value)
    with pytest.raises(IntSmoothError) as info:
        read_results(path)
    text = str(info.value)
    assert text.startswith(f"{path}, line {line_no}: ")
    assert message in text
    assert "\n" not in text


def test_bad_sidecar_and_empty_file(tmp_path):
    path = tmp_path / "RESULTS.tsv"
    write_run(path, certified_rows())
    sidecar_path(path).write_text("{not json")
    with pytest.raises(IntSmoothError, match="not a readable JSON sidecar"):
        read_results(path)
    path.write_text("")
    sidecar_path(path).unlink()
    with pytest.raises(IntSmoothError, match="empty file"):
        read_results(path)
    with pytest.raises(IntSmoothError, match="cannot read"):
        read_results(tmp_path / "missing.tsv")


def test_reads_the_reference_six_column_layout(tmp_path):
    path = tmp_path / "sigma_0.25"
    path.write_text(
        "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"
        "0\t3\t3\t0.581\t1\t0:00:03.120381\n"
        "20\t8\t-1\t0.0\t0\t0:00:03.101002\n"
        "40\t8\t1\t0.0573\t0\t0:00:03.113300\n"
    )
    results = read_results(path)
    assert results.metadata is None
    assert [(r.idx, r.predict, r.radius, r.correct) for r in results.rows] == [
        (0, 3, 0.581, 1),
        (20, -1, 0.0, 0),
        (40, 1, 0.0573, 0),
    ]
    assert results.rows[0].n_a is None
    assert results.rows[2].time_s == pytest.approx(3.1133)
