"""Tutorial 04, tuning: fast int8 kernels for your model on your CPU, with the same votes.

    python tutorials/04_tuning.py      # about 30 minutes on a 2-core machine (64 trials)
    INTSMOOTH_TUTORIAL_SMALL=1 python tutorials/04_tuning.py  # fast mode

Fast mode: 2 trials, 100 calibration images, 200 benchmark samples.

`intsmooth compile` builds every convolution as a blocked int8 kernel with a fixed schedule,
tensorized with the best dot-product instruction of the target (AVX-512 VNNI vpdpbusd, AVX2
vpmaddubsw + vpmaddwd, ARM sdot or smull). MetaSchedule can do better for a given model and
batch: `intsmooth tune` searches schedules for each kernel with the target's tensorizing rules
and TVM's XGBoost cost model, times the candidates, and writes a database that `compile` applies.
In a shell:

    intsmooth compile MODEL.onnx --sigma 0.25 --calib DATA --batch 50 -o ART
        # no database for this architecture and batch: "the build is untuned", and the command:
    intsmooth tune MODEL.onnx --sigma 0.25 --calib DATA --batch 50 --trials 64 -o DB
    intsmooth compile MODEL.onnx --sigma 0.25 --calib DATA --batch 50 --schedules DB -o ART_TUNED
    intsmooth bench ART ; intsmooth bench ART_TUNED

Without `-o`, `tune` writes to <target>/<key>/ in the user's folder ($INTSMOOTH_SCHEDULES, else
~/.cache/tvm_intsmooth/schedules), where `compile` finds it by itself; it merges into the
database already there, saves after every round, and Ctrl-C keeps what was measured. A
database serves every model of the same architecture, input shape and batch, whatever its
weights, calibration data and sigma. The bundled models come with databases for batch 100 on
x86-vnni and x86-avx2 (schedules/README.md), which tune merges into and never writes.

Tuning never changes a vote: every candidate computes the same integer sums, and tuning keeps a
kernel's tuned schedule only where it is faster than the fixed one. This tutorial checks it.

Raspberry Pi: candidates must be timed on the board. Start TVM's RPC server on the Pi (see
tutorial 03) and run, here, `intsmooth tune ... --target rpi5 --rpc PI:9090` (or `--tracker
HOST:PORT --key KEY` for boards behind a tracker). The emulated Pi (`intsmooth emulate-pi`)
accepts the same command as a functional check, but its timings are those of an emulator: tune
on a real board.
"""

import os
from pathlib import Path

import numpy as np

from tvm_intsmooth.assets import DEMO_DATA, DEMO_MODEL
from tvm_intsmooth.cli.main import run as intsmooth  # `intsmooth ARGS...` from Python
from tvm_intsmooth.data import load_npz
from tvm_intsmooth.runtime import SmoothedClassifier

SMALL = os.environ.get("INTSMOOTH_TUTORIAL_SMALL") == "1"  # the tests' setting
TRIALS, CALIB, BENCH_N = (2, 100, 200) if SMALL else (64, 500, 5000)
OUT = Path(os.environ.get("INTSMOOTH_TUTORIAL_OUT", "tutorial-output")) / "04_tuning"


OUT.mkdir(parents=True, exist_ok=True)
model = ["--sigma", 0.25, "--calib", DEMO_DATA, "--calib-images", CALIB, "--batch", 50]
untuned, tuned, database = OUT / "untuned", OUT / "tuned", OUT / "database"

intsmooth("compile", DEMO_MODEL, *model, "-o", untuned)
intsmooth(
    "tune", DEMO_MODEL, *model, "--trials", TRIALS, "--trials-per-iter", min(TRIALS, 16),
    "-o", database,
)  # fmt: skip
intsmooth("compile", DEMO_MODEL, *model, "--schedules", database, "-o", tuned)
intsmooth("bench", untuned, "--n", BENCH_N, "--repeat", 3)
intsmooth("bench", tuned, "--n", BENCH_N, "--repeat", 3)

# The same seed gives the same votes, tuned or not.
images, _ = load_npz(DEMO_DATA)
a, b = SmoothedClassifier.load(untuned), SmoothedClassifier.load(tuned)
for seed in (1, 2**64 - 1):
    votes = a.counts(images[0], 500, seed)
    assert np.array_equal(votes, b.counts(images[0], 500, seed)), "tuning changed a vote"
print(f"tuned and untuned votes are equal: {votes.tolist()}")
