"""Bundled target files parse into TVM targets with the flags that targets/README.md documents."""

import json
import os

import psutil
import pytest
import tvm
from tvm.target import codegen

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.schedule import TargetSpec, list_targets, resolve_target
from tvm_intsmooth.schedule.targets import targets_dir

BUNDLED = ["rpi4", "rpi5", "x86-64", "x86-vnni"]


def has(spec: TargetSpec, feature: str) -> bool:
    return bool(codegen.target_has_features(feature, spec.target))


def test_list_targets():
    assert list_targets() == [*BUNDLED, "host"]
    assert sorted(p.stem for p in targets_dir().glob("*.json")) == BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_file_parses_into_its_tvm_target(name):
    config = json.loads((targets_dir() / f"{name}.json").read_text())
    assert set(config) <= {"description", "target", "host", "cross_compiler"}
    spec = resolve_target(name)
    assert spec.name == name and spec.description == config["description"] != ""
    assert spec.target.kind.name == "llvm"
    assert str(spec.target) == str(tvm.target.Target(config["target"]))
    assert spec.num_cores == config["target"]["num-cores"] >= 1
    assert spec.host is None  # CPU targets: the host code runs on the same CPU


def test_x86_flags():
    vnni, generic = resolve_target("x86-vnni"), resolve_target("x86-64")
    for spec in (vnni, generic):
        assert spec.target.attrs["mtriple"].startswith("x86_64")
        assert spec.cross_compiler is None
    assert has(vnni, "avx512vnni") and has(vnni, "avx512bw")
    assert str(vnni.target.attrs["mcpu"]) == "cascadelake"
    assert not has(generic, "avx512vnni") and not has(generic, "avx2") and has(generic, "sse2")


def test_raspberry_pi_flags():
    rpi4, rpi5 = resolve_target("rpi4"), resolve_target("rpi5")
    for spec in (rpi4, rpi5):
        assert spec.target.attrs["mtriple"] == "aarch64-linux-gnu"
        assert spec.cross_compiler == "aarch64-linux-gnu-gcc"
        assert spec.num_cores == 4 and has(spec, "neon")
        assert "arm_cpu" in spec.target.keys
    assert rpi4.target.attrs["mcpu"] == "cortex-a72" and list(rpi4.target.attrs["mattr"]) == [
        "+neon"
    ]
    assert rpi5.target.attrs["mcpu"] == "cortex-a76"
    assert set(rpi5.target.attrs["mattr"]) == {"+neon", "+dotprod"}
    assert has(rpi5, "dotprod") and rpi5.target.attrs["feature.has_dotprod"]
    assert not has(rpi4, "dotprod") and not rpi4.target.attrs["feature.has_dotprod"]


def test_host_target():
    spec = resolve_target("host")
    assert spec.name == "host" and spec.cross_compiler is None
    assert spec.target.attrs["mcpu"] == codegen.llvm_get_system_cpu()
    expected = min(
        c
        for c in (psutil.cpu_count(logical=False), len(os.sched_getaffinity(0)), os.cpu_count())
        if c
    )
    assert spec.num_cores == expected


def test_with_num_cores_keeps_everything_else():
    rpi5 = resolve_target("rpi5")
    three = rpi5.with_num_cores(3)
    assert three.num_cores == 3 and rpi5.num_cores == 4
    assert three.target.attrs["mcpu"] == "cortex-a76" and has(three, "dotprod")
    assert three.cross_compiler == rpi5.cross_compiler
    for bad in (0, -1, True, 2.0):
        with pytest.raises(IntSmoothError, match="num_threads"):
            rpi5.with_num_cores(bad)


def test_unknown_name_lists_known_names():
    with pytest.raises(IntSmoothError) as err:
        resolve_target("rpi3")
    for name in list_targets():
        assert name in str(err.value)


def test_path_and_dict_forms(tmp_path):
    config = {
        "description": "a test board",
        "target": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a53",
                   "num-cores": 4},
        "cross_compiler": "aarch64-linux-gnu-gcc",
    }  # fmt: skip
    path = tmp_path / "board.json"
    path.write_text(json.dumps(config))
    from_file = resolve_target(path)
    assert from_file.name == "board" and from_file.target.attrs["mcpu"] == "cortex-a53"
    assert resolve_target(str(path)).cross_compiler == "aarch64-linux-gnu-gcc"
    assert resolve_target(config).target.attrs["mcpu"] == "cortex-a53"
    plain = resolve_target({"kind": "llvm", "num-cores": 2})
    assert plain.num_cores == 2 and plain.cross_compiler is None
    assert resolve_target(from_file) is from_file


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not readable JSON"),
        ('{"description": "x"}', "'target' object"),
        ('{"target": {"kind": "llvm", "num-cores": 1}, "flags": 1}', "unknown keys"),
        ('{"target": {"kind": "no-such-kind", "num-cores": 1}}', "TVM rejects"),
        ('{"target": {"kind": "llvm"}}', "num-cores"),
        ('{"target": {"kind": "llvm", "num-cores": 1}, "cross_compiler": 3}', "cross_compiler"),
    ],
)
def test_bad_target_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(IntSmoothError, match=message) as err:
        resolve_target(path)
    assert str(path) in str(err.value)


def test_missing_file_and_bad_type(tmp_path):
    with pytest.raises(IntSmoothError, match="does not exist"):
        resolve_target(tmp_path / "absent.json")
    with pytest.raises(IntSmoothError, match="target must be"):
        resolve_target(42)
