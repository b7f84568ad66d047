"""The shipped tuned databases (schedules/<target>/<key>/) still match the bundled models.

Each database's info.json records the `intsmooth tune` command that made it; compiling that model
today as the command does must give the database's key, and the database must be the one the
build finds for the target without flags. (The key also holds each blocked conv's data bound,
``intsmooth.data_max``, which comes from calibration and sigma.) A change to the graph
(layout, fusion) that orphans a database fails here instead of silently building untuned.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from tvm_intsmooth.data import load_dataset
from tvm_intsmooth.importer import import_onnx
from tvm_intsmooth.schedule.database import (
    find_database,
    fused_module,
    load_database,
    schedules_dir,
    workload_key,
)
from tvm_intsmooth.schedule.targets import resolve_target
from tvm_intsmooth.schedule.tune import tunable_tasks
from tvm_intsmooth.smoothing.api import smooth

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "schedules").glob("*/*/info.json"))


def _option(words: list[str], name: str, default: str) -> str:
    return words[words.index(name) + 1] if name in words else default


@pytest.mark.parametrize(
    "info_path", SHIPPED, ids=lambda p: f"{p.parent.parent.name}-{p.parent.name}"
)
def test_shipped_database_matches_its_bundled_model(info_path, monkeypatch):
    monkeypatch.delenv("INTSMOOTH_SCHEDULES", raising=False)
    info = json.loads(info_path.read_text())
    words = shlex.split(info["command"])
    assert words[:2] == ["intsmooth", "tune"]
    model = ROOT / words[2]
    target = _option(words, "--target", "host")
    batch = int(_option(words, "--batch", "100"))
    spec = resolve_target(target)
    imported = import_onnx(model)
    calib, _ = load_dataset(_option(words, "--calib", ""), split="train", max_count=500)
    sigma = float(_option(words, "--sigma", "0.25"))
    fused = fused_module(smooth(imported, calib, sigma, batch=batch).mod, spec)
    key = workload_key(fused)
    assert key == info["key"] == info_path.parent.name
    assert info_path.parent.parent == schedules_dir() / spec.resolved_name
    found = find_database(key, spec)
    assert found is not None and found.path == info_path.parent
    # Every kept kernel is a task of today's model, and has its record.
    names = {task.task_name for task, _ in tunable_tasks(fused, spec)}
    kept = [t for t in info["tasks"] if t["kept"]]
    assert kept and {t["name"] for t in kept} <= names
    records = load_database(info_path.parent).database.get_all_tuning_records()
    assert len(records) == len(kept)
