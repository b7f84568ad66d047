"""Bundled target files parse into TVM targets with the flags that targets/README.md documents."""

import json
import os

import psutil
import pytest
import tvm
from tvm.target import codegen

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.schedule import TargetSpec, list_targets, resolve_target
from tvm_intsmooth.schedule import targets as T
from tvm_intsmooth.schedule.targets import cpuinfo_features, host_target_name, targets_dir

BUNDLED = ["rpi4", "rpi5", "x86-64", "x86-amx", "x86-avx2", "x86-vnni"]


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
    vnni, avx2 = resolve_target("x86-vnni"), resolve_target("x86-avx2")
    generic, amx = resolve_target("x86-64"), resolve_target("x86-amx")
    for spec in (vnni, avx2, generic, amx):
        assert spec.target.attrs["mtriple"].startswith("x86_64")
        assert spec.cross_compiler is None
    assert has(vnni, "avx512vnni") and has(vnni, "avx512bw")
    assert str(vnni.target.attrs["mcpu"]) == "cascadelake"
    assert has(avx2, "avx2") and has(avx2, "fma") and not has(avx2, "avx512f")
    assert not has(generic, "avx512vnni") and not has(generic, "avx2") and has(generic, "sse2")
    assert has(amx, "amx-int8") and has(amx, "amx-tile") and has(amx, "avx512vnni")
    assert not has(vnni, "amx-tile")


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
    expected = min(
        c
        for c in (psutil.cpu_count(logical=False), len(os.sched_getaffinity(0)), os.cpu_count())
        if c
    )
    assert spec.num_cores == expected
    resolved = host_target_name()
    assert spec.resolved == resolved and spec.resolved_name == (resolved or "host")
    if resolved is None:  # no bundled target fits: LLVM's own view of this CPU
        assert spec.target.attrs["mcpu"] == codegen.llvm_get_system_cpu()
    else:  # the bundled file's flags, this machine's core count
        bundled = resolve_target(resolved)
        assert spec.target.attrs["mcpu"] == bundled.target.attrs["mcpu"]
        assert list(spec.target.attrs.get("mattr", [])) == list(
            bundled.target.attrs.get("mattr", [])
        )
        # every feature the bundled target compiles for, this CPU has (LLVM's view of it)
        arch, llvm_features = T.llvm_host_features()
        assert dict(T._HOST_CHOICES[arch])[resolved] <= llvm_features


ZEN4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse sse2 avx avx2 fma bmi1 bmi2 f16c movbe avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni\n"  # noqa: E501
HASWELL = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma bmi1 bmi2 f16c movbe\n"
SANDY = "processor\t: 0\nflags\t\t: fpu sse sse2 avx\n"
SKYLAKE_X = HASWELL.replace("movbe", "movbe avx512f avx512dq avx512cd avx512bw avx512vl")
SAPPHIRE_RAPIDS = ZEN4.replace(
    "avx512_vnni", "avx512_vnni avx512vbmi avx512_vbmi2 avx512_bf16 avx512_fp16 amx_tile amx_int8"
)
A76 = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 atomics asimddp\n"
A72 = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (ZEN4, "x86-vnni"),
        (SAPPHIRE_RAPIDS, "x86-amx"),
        (SAPPHIRE_RAPIDS.replace(" amx_int8", ""), "x86-vnni"),  # tiles without int8
        (HASWELL, "x86-avx2"),
        (SKYLAKE_X, "x86-avx2"),  # AVX-512 without VNNI: the AVX2 kernels
        (SANDY, "x86-64"),
        (A76, "rpi5"),
        (A72, "rpi4"),
        ("processor\t: 0\ncpu\t\t: POWER9\n", None),
    ],
)
def test_host_target_name_from_cpuinfo(cpuinfo, expected):
    assert host_target_name(*cpuinfo_features(cpuinfo)) == expected


def test_cpuinfo_names_become_llvm_names():
    arch, features = cpuinfo_features(A76)
    assert arch == "aarch64" and {"neon", "dotprod"} <= features and "asimddp" not in features
    arch, features = cpuinfo_features(ZEN4)
    assert arch == "x86_64" and {"avx512vnni", "bmi", "avx2"} <= features


def test_host_features_fall_back_to_llvm(monkeypatch):
    """Without a readable /proc/cpuinfo, the features come from LLVM's host CPU, and agree."""
    from_cpuinfo = T.host_features()
    monkeypatch.setattr(T, "cpuinfo_features", lambda text: (None, set()))
    arch, features = T.host_features()
    assert (arch, features) == T.llvm_host_features()
    if from_cpuinfo[0] is not None:
        assert arch == from_cpuinfo[0]
        assert host_target_name(arch, features) == host_target_name(*from_cpuinfo)


def test_host_takes_amx_only_where_linux_grants_it(monkeypatch):
    """A CPU with AMX whose kernel refuses the tile state resolves to the next target."""
    from tvm_intsmooth.schedule.intrinsics import amx

    monkeypatch.setattr(T, "host_features", lambda: cpuinfo_features(SAPPHIRE_RAPIDS))
    monkeypatch.setattr(amx, "granted", lambda: False)
    assert host_target_name() == "x86-vnni" and not T.host_can_run("x86-amx")
    monkeypatch.setattr(amx, "granted", lambda: True)
    assert host_target_name() == "x86-amx" and T.host_can_run("x86-amx")


def test_host_without_bundled_match_keeps_llvm_cpu(monkeypatch):
    monkeypatch.setattr(T, "host_target_name", lambda: None)
    spec = resolve_target("host")
    assert spec.resolved is None and spec.resolved_name == "host"
    assert spec.target.attrs["mcpu"] == codegen.llvm_get_system_cpu()


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
