"""Remote vote counts are checked on the host: a forging RPC server is caught and named.

A tampering server (tests/tampering_rpc_server.py) loads a forged build of the same module
whatever the client uploads: it moves one vote per batch to class 1 (taking it from class 0, so
that every batch still sums to its sample count). Its facts are those of the honest library, so
only recomputing batches on the host can tell. Everything runs on x86 TVM RPC servers on
127.0.0.1, each killed with its process group at the end of its test.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import tvm
from conftest import random_images
from onnx_models import first_pixel_model
from rpc_servers import error_line, intsmooth, rpc_tracker, x86_server
from tvm import relax

from tvm_intsmooth.data import save_npz
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.pipeline.build import build, export
from tvm_intsmooth.pipeline.smooth import smooth
from tvm_intsmooth.remote import Device, load_artifact
from tvm_intsmooth.remote.verify import ForgedCounts, VerifiedCounts, load_verifier
from tvm_intsmooth.runtime import ArtifactMeta, SmoothedClassifier, save_artifact
from tvm_intsmooth.schedule.targets import resolve_target

SHAPE = (1, 4, 4)
SEED = 0x5EED
# 1 + 300 batches of 8 per image: a default 5 % check misses a forgery of every batch with
# probability 0.95^301 < 2e-7, and the run is slow enough for both servers to get images.
SAMPLING = ["--n0", "8", "--n", "2400", "--alpha", "0.01", "--seed", str(SEED)]


def forged_module(mod: tvm.IRModule, num_classes: int, take: bool = True) -> tvm.IRModule:
    """``mod`` whose main adds one vote to class 1 in every batch, taken from class 0 when
    ``take`` (and class 0 has one), else out of nothing."""
    honest = mod["main"]
    bb = relax.BlockBuilder(
        tvm.IRModule({gv: f for gv, f in mod.functions_items() if gv.name_hint != "main"})
    )
    inner = bb.add_func(honest.with_attr("global_symbol", "honest_main"), "honest_main")
    params = [relax.Var(p.name, p.ty) for p in honest.params]
    attrs = {k: v for k, v in honest.attrs.items() if k != "global_symbol"}
    delta = np.zeros(num_classes, "int32")
    delta[1] = 1
    with bb.function("main", params, attrs=attrs):
        with bb.dataflow():
            votes = bb.emit(relax.Call(inner, params))
            moved = relax.const(delta)
            if take:
                delta[0] = -1
                first = relax.op.strided_slice(votes, [0], [0], [1])
                has = bb.emit(relax.op.astype(relax.op.greater(first, relax.const(0)), "int32"))
                moved = bb.emit(relax.op.multiply(relax.const(delta), has))
            out = bb.emit_output(relax.op.add(votes, moved))
        bb.emit_func_output(out)
    return bb.get()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An honest artifact (this machine's target), forged libraries of the same module, data
    (first pixels of 255: every honest vote goes to class 0) and the honest local rows."""
    root = tmp_path_factory.mktemp("verify")
    model = first_pixel_model(SHAPE)
    smoothed = smooth(model, random_images(SHAPE, 16, seed=1), 0.25, batch=8)
    save_artifact(smoothed, root / "art")
    spec = resolve_target("host")
    for name, take in (("forged.so", True), ("naive.so", False)):
        export(build(forged_module(smoothed.mod, 2, take), spec), root / name, spec)
    images = random_images(SHAPE, 6, seed=2)
    images[:, 0, 0, 0] = 255
    save_npz(root / "data.npz", images, np.zeros(6, np.int64))
    proc = intsmooth("certify", root / "art", "--data", root / "data.npz", *SAMPLING,
                     "-o", root / "local.tsv")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return root


def rows(path) -> dict[str, list[str]]:
    """idx -> the row of a RESULTS.tsv without its time column."""
    lines = path.read_text().splitlines()[1:]
    return {line.split("\t")[0]: line.split("\t")[:5] + line.split("\t")[6:] for line in lines}


def certify(setup, out, *device):
    return intsmooth(
        "certify", setup / "art", "--data", setup / "data.npz", *SAMPLING, "-o", out, *device
    )


def test_tracker_refuses_the_images_of_a_forging_server(setup, tmp_path):
    """Over a tracker with an honest and a forging server, certify refuses the images that the
    forger served, names it, and keeps the honest rows; with --verify 0 the forgery goes
    through: the check is what catches it."""
    honest = rows(setup / "local.tsv")
    with (
        rpc_tracker() as (tracker, _),
        x86_server(tracker, "x86"),
        x86_server(tracker, "x86", forged=setup / "forged.so") as forger,
    ):
        device = ["--tracker", "{}:{}".format(*tracker), "--key", "x86", "--workers", "2"]
        line = error_line(certify(setup, tmp_path / "checked.tsv", *device))
        assert f"127.0.0.1:{forger[1]}" in line, line
        refused = re.search(r"images ([\d, ]+) are refused", line)
        assert refused, line
        refused = set(refused.group(1).split(", "))
        kept = rows(tmp_path / "checked.tsv")
        assert refused and not refused & kept.keys() and refused | kept.keys() == honest.keys()
        assert all(kept[idx] == honest[idx] for idx in kept)

        proc = certify(setup, tmp_path / "trusted.tsv", *device, "--verify", "0")
        assert proc.returncode == 0, proc.stderr
        trusted = rows(tmp_path / "trusted.tsv")
        assert trusted.keys() == honest.keys()
        assert any(trusted[idx] != honest[idx] for idx in trusted)  # forged rows went through


def test_rpc_forger_is_refused_unless_verify_is_0(setup, tmp_path):
    """One forging server (--rpc): certify and predict refuse its counts, naming it; with
    --verify 0 every row is forged (one vote of each batch moved to class 1)."""
    honest = rows(setup / "local.tsv")
    with x86_server(forged=setup / "forged.so") as forger:
        device = ["--rpc", f"127.0.0.1:{forger[1]}"]
        line = error_line(certify(setup, tmp_path / "checked.tsv", *device))
        assert f"127.0.0.1:{forger[1]}" in line and "refused" in line, line
        assert not (tmp_path / "checked.tsv").exists() or not rows(tmp_path / "checked.tsv")
        predict = ["predict", setup / "art", "--data", setup / "data.npz", "--n", "800"]
        line = error_line(intsmooth(*predict, *device))
        assert f"127.0.0.1:{forger[1]}" in line and "this machine computes" in line

        proc = certify(setup, tmp_path / "trusted.tsv", *device, "--verify", "0")
        assert proc.returncode == 0, proc.stderr
        forged = rows(tmp_path / "trusted.tsv")
        # 300 estimation batches, one vote moved out of class 0 in each
        want = {idx: int(row[5]) - 300 for idx, row in honest.items()}
        assert {idx: int(row[5]) for idx, row in forged.items()} == want
        assert intsmooth(*predict, *device, "--verify", "0").returncode == 0


def test_impossible_counts_are_refused_without_recomputing(setup):
    """A batch whose votes do not sum to its sample count is refused even with --verify 0."""
    with x86_server(forged=setup / "naive.so") as server:
        remote = load_artifact(setup / "art", Device(rpc=server).open())
        clf = VerifiedCounts(remote, None, 0.0, "the naive server")
        with pytest.raises(ForgedCounts, match="the naive server returned the votes .* exactly 8"):
            clf.counts(random_images(SHAPE, 1, seed=4)[0], 16, SEED)


def test_every_batch_is_recomputed_with_verify_1(setup):
    local = SmoothedClassifier.load(setup / "art")
    image = random_images(SHAPE, 1, seed=5)[0]
    with x86_server() as server:
        remote = load_artifact(setup / "art", Device(rpc=server).open())
        clf = VerifiedCounts(remote, load_verifier(setup / "art"), 1.0, "honest")
        counts = clf.counts(image, 8 * 7 + 3, SEED, stream=3)
        assert clf.batches == clf.recomputed == 8
        none = VerifiedCounts(remote, None, 0.0, "honest")
        np.testing.assert_array_equal(none.counts(image, 8 * 7 + 3, SEED, stream=3), counts)
        assert none.recomputed == 0
    np.testing.assert_array_equal(counts, local.counts(image, 8 * 7 + 3, SEED, stream=3))


def test_library_swapped_after_its_check_is_not_uploaded(setup, tmp_path, monkeypatch):
    """The bytes uploaded are the bytes whose SHA-256 was checked: a model.so replaced right
    after the check (by one with the same facts) is refused, not uploaded."""
    art = shutil.copytree(setup / "art", tmp_path / "art")
    check = ArtifactMeta.check_library

    def check_then_swap(self, folder):
        library = check(self, folder)
        shutil.copy(setup / "forged.so", library)
        return library

    monkeypatch.setattr(ArtifactMeta, "check_library", check_then_swap)
    with x86_server() as server, pytest.raises(IntSmoothError, match="changed after it was"):
        load_artifact(art, Device(rpc=server).open())


def test_arm_artifact_ships_a_host_library_checked_like_model_so(setup, tmp_path):
    """An artifact for a board this machine cannot run holds model.host.so (a portable build of
    the same module), hashed in meta.json; its counts are the host artifact's."""
    smoothed = smooth(first_pixel_model(SHAPE), random_images(SHAPE, 16, seed=1), 0.25, batch=8)
    art = save_artifact(smoothed, tmp_path / "rpi4", "rpi4")
    meta = json.loads((art / "meta.json").read_text())
    assert meta["host_target"] == "x86-64" and len(meta["host_library_sha256"]) == 64
    image = random_images(SHAPE, 1, seed=6)[0]
    want = SmoothedClassifier.load(setup / "art").counts(image, 40, SEED, stream=7)
    np.testing.assert_array_equal(load_verifier(art).counts(image, 40, SEED, stream=7), want)
    (art / "model.host.so").unlink()  # a new file: the loaded one must stay mapped as it is
    shutil.copy(setup / "art" / "model.so", art / "model.host.so")
    with pytest.raises(IntSmoothError, match="model.host.so has SHA-256"):
        load_verifier(art)
