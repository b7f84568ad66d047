"""`intsmooth tune` loses nothing, and databases are checked when they are loaded.

The search runs for real (MetaSchedule's task extraction, search space, evolutionary search and
cost model), but with a builder and a runner that only pretend to build and time candidates, so
that these tests take seconds per round on any CPU. Every test writes under tmp_path; the shipped
databases are hashed before and after (conftest.py does the same around the whole session).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import tvm_ffi
from conftest import random_images
from fake_tuning import FakeBuilder, FakeRunner
from onnx_models import conv_model
from rpc_servers import error_line, intsmooth
from tvm.s_tir import meta_schedule as ms

import tvm_intsmooth.pipeline.tune as tune_module
import tvm_intsmooth.schedule.database as database_module
from tvm_intsmooth.assets import DEMO_DATA, DEMO_MODEL
from tvm_intsmooth.cli.main import main
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.pipeline.tune import tune
from tvm_intsmooth.schedule.database import SCHEDULES_ENV, load_database

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "schedules"
TARGET = "x86-vnni"


SHAPE = (1, 12, 12)


def shipped_hashes() -> dict[str, str]:
    return {
        str(p.relative_to(SHIPPED)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(SHIPPED.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module", autouse=True)
def shipped_unchanged():
    before = shipped_hashes()
    yield
    assert shipped_hashes() == before, "a tune test changed the shipped databases"


@pytest.fixture(autouse=True)
def user_folder(tmp_path, monkeypatch):
    """The user's folder of every test: its own, empty."""
    monkeypatch.delenv(SCHEDULES_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tvm_intsmooth" / "schedules"


@pytest.fixture(scope="module")
def smoothed():
    return smooth(conv_model(), random_images(SHAPE, 32, seed=1), 0.5, batch=10)


def demo_smoothed():
    return smooth(DEMO_MODEL, random_images((1, 28, 28), 8, 1), 0.25, batch=100)


@pytest.fixture(scope="module")
def cnn_database(tmp_path_factory) -> Path:
    """A database of the bundled CNN at batch 100 (the README's build), by the pretend search:
    what a shipped one would be, without depending on one being shipped."""
    out = tmp_path_factory.mktemp("cnn") / "db"
    fake_tune(demo_smoothed(), out, trials=8)
    return out


def fake_tune(smoothed, out, trials, runner=None, builder=None, **kwargs):
    return tune(smoothed, TARGET, trials=trials, output=out, builder=builder or FakeBuilder(),
                runner=runner or FakeRunner(), trials_per_iter=2, progress=False, keep="all",
                **kwargs)  # fmt: skip


def records_by_task(path: Path) -> dict[str, float]:
    """task hash -> mean run time of its record in the database at ``path``."""
    db = load_database(path).database
    return {
        str(tvm_ffi.structural_hash(r.workload.mod, skip_tensor_content=True)): float(
            np.mean([float(s) for s in r.run_secs])
        )
        for r in db.get_all_tuning_records()
    }


def test_ctrl_c_stops_after_the_running_candidate_and_keeps_what_was_measured(smoothed, tmp_path):
    """SIGINT while the third candidate runs: it finishes and is kept, nothing more runs,
    info.json says interrupted; before, the search ran all its trials."""
    out = tmp_path / "db"
    handler = signal.getsignal(signal.SIGINT)  # default, or ignored in a background job
    runner, builder = FakeRunner(interrupt_at=1 + 3), FakeBuilder()
    result = fake_tune(smoothed, out, trials=40, runner=runner, builder=builder)
    assert result.interrupted and result.trials == 3 and runner.calls == 4
    assert builder.built == 2 + 2 + 3  # two rounds, and the untuned schedules; nothing after
    info = json.loads((out / "info.json").read_text())
    assert info["interrupted"] is True and info["trials"] == 3 and info["complete"] is True
    assert len(load_database(out).database.get_all_tuning_records()) >= 1
    assert signal.getsignal(signal.SIGINT) is handler  # restored


def test_merging_keeps_the_better_record_and_every_workload(smoothed, tmp_path):
    out = tmp_path / "db"
    fake_tune(smoothed, out, trials=6, runner=FakeRunner(seconds=2e-3))  # every task a round
    first = records_by_task(out)
    assert len(first) == 3 and set(first.values()) == {2e-3}
    fake_tune(smoothed, out, trials=2, runner=FakeRunner(seconds=1e-3))  # one task, faster
    merged = records_by_task(out)
    assert merged.keys() == first.keys()  # no workload dropped
    assert sorted(merged.values()) == [1e-3, 2e-3, 2e-3]  # the faster record replaced one
    fake_tune(smoothed, out, trials=2, runner=FakeRunner(seconds=5e-3))  # slower: kept out
    assert records_by_task(out) == merged
    info = json.loads((out / "info.json").read_text())
    assert info["trials"] == 6 + 2 + 2 and sum(t["trials"] for t in info["tasks"]) == 10


def test_output_folder_not_written_by_tune_is_refused(smoothed, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    with pytest.raises(
        IntSmoothError, match="not a schedule database written by intsmooth.*--force"
    ):
        fake_tune(smoothed, notes, trials=2)
    assert (notes / "todo.txt").read_text() == "mine" and len(list(notes.iterdir())) == 1
    fake_tune(smoothed, notes, trials=2, force=True)
    assert (notes / "info.json").is_file()


def test_full_disk_stops_the_search_and_keeps_the_last_save(smoothed, tmp_path, monkeypatch):
    """The second save fails with ENOSPC: the search stops there (not after every trial), the
    error is one paragraph naming the file, and the first save is whole."""
    out = tmp_path / "db"
    write = database_module.write_folder
    saves = []

    def full_disk(path, *args):
        saves.append(path)
        if len(saves) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path / "info.json"))
        return write(path, *args)

    monkeypatch.setattr(database_module, "write_folder", full_disk)
    with pytest.raises(IntSmoothError, match="No space left on device.*nothing saved before"):
        fake_tune(smoothed, out, trials=40)
    assert len(saves) == 2  # it stopped at the failed save
    info = json.loads((out / "info.json").read_text())
    assert info["trials"] == 2 and info["complete"] is False
    assert len(load_database(out).database.get_all_tuning_records()) == 1


def test_tune_cli_defaults_write_the_users_folder_merged_with_the_shipped_one(
    user_folder, cnn_database, tmp_path, monkeypatch, capsys
):
    """`intsmooth -q tune` with the default output writes the user's folder, never the
    package's schedules/ (hashed before and after), merges the database shipped for the key,
    and shows no progress bar."""
    monkeypatch.setattr(tune_module, "default_builder", lambda spec: FakeBuilder())
    monkeypatch.setattr(ms.runner, "LocalRunner", lambda **kwargs: FakeRunner(seconds=1.0))
    shipped = tmp_path / "shipped"  # a shipped database for the key this model has today
    monkeypatch.setattr(database_module, "schedules_dir", lambda: shipped)
    args = ["-q", "tune", DEMO_MODEL, "--sigma", "0.25", "--calib", DEMO_DATA, "--calib-images"]
    args += ["100", "--target", TARGET, "--batch", "100", "--trials", "2", "--trials-per-iter", "2"]
    key = tune_module.workload_key(tune_module.fused_module(demo_smoothed().mod, TARGET))
    shutil.copytree(cnn_database, shipped / TARGET / key)
    old = json.loads((shipped / TARGET / key / "info.json").read_text())
    before = shipped_hashes()
    capsys.readouterr()
    assert main([str(a) for a in args]) == 0
    assert shipped_hashes() == before
    written = user_folder / TARGET / key
    info = json.loads((written / "info.json").read_text())
    assert info["merged_into"] == str(shipped / TARGET / key)
    assert info["trials"] == old["trials"] + 2
    ours = load_database(written).database.get_all_tuning_records()
    assert len(ours) == len(load_database(shipped / TARGET / key).database.get_all_tuning_records())
    assert "trial" not in capsys.readouterr().err  # -q: no progress bar


# --- databases checked at load -------------------------------------------------------------


def database_copy(database: Path, tmp_path: Path) -> Path:
    return shutil.copytree(database, tmp_path / "db")


def compile_args(db, *extra):
    return ["compile", DEMO_MODEL, "--sigma", "0.25", "--calib", DEMO_DATA, "--calib-images",
            "50", "--schedules", db, *extra]  # fmt: skip


def test_truncated_database_is_one_paragraph(cnn_database, tmp_path):
    db = database_copy(cnn_database, tmp_path)
    data = (db / "database_workload.json.gz").read_bytes()
    (db / "database_workload.json.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(IntSmoothError, match="database_workload.json.gz is damaged.*SHA-256"):
        load_database(db)
    info = json.loads((db / "info.json").read_text())
    del info["files"]  # a database of an older version: no hashes, the parse error instead
    (db / "info.json").write_text(json.dumps(info))
    with pytest.raises(IntSmoothError, match="is damaged.*EOFError"):
        load_database(db)
    line = error_line(intsmooth(*compile_args(db, "--target", TARGET, "-o", tmp_path / "art")))
    assert str(db) in line and "Tune it again" in line


def test_database_of_another_target_or_tvm_is_refused(cnn_database, tmp_path):
    """An x86-vnni database applied with --target rpi5 aborted inside LLVM (exit 134)."""
    db = database_copy(cnn_database, tmp_path)
    line = error_line(intsmooth(*compile_args(db, "--target", "rpi5", "-o", tmp_path / "art")))
    assert "tuned for x86-vnni, but this build is for rpi5" in line, line
    info = json.loads((db / "info.json").read_text())
    (db / "info.json").write_text(json.dumps({**info, "tvm": "0.1.0"}))
    with pytest.raises(IntSmoothError, match="tuned with TVM 0.1.0"):
        load_database(db, TARGET)


def test_shipped_info_records_the_hashes_of_unchanged_files():
    for info_path in SHIPPED.glob("*/*/info.json"):
        info = json.loads(info_path.read_text())
        for name, digest in info["files"].items():
            assert hashlib.sha256((info_path.parent / name).read_bytes()).hexdigest() == digest
        gzip.decompress((info_path.parent / "database_workload.json.gz").read_bytes())
