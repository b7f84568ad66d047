"""Tutorial 01, quickstart: compile a model, certify images, read the report.

    python tutorials/01_quickstart.py      # about 5 minutes on a laptop CPU
    INTSMOOTH_TUTORIAL_SMALL=1 python tutorials/01_quickstart.py  # fast mode

Fast mode: n = 300, 3 images, 100 calibration images.

It runs the three commands of the main job on the bundled Fashion-MNIST CNN (trained with
Gaussian noise, sigma 0.25) and its bundled real test images. In a shell they read:

    intsmooth compile MODEL.onnx --sigma 0.25 --calib DATA.npz -o ARTIFACT
    intsmooth certify ARTIFACT --data DATA.npz --skip 25 --max-images 20 --n0 100 --n 10000 \
        -o RESULTS.tsv
    intsmooth report RESULTS.tsv

`compile` quantizes the model to integer-only arithmetic (calibrated on noisy copies of DATA),
puts the integer noise sampler and the vote counter into the graph, builds it for this CPU and
writes the artifact folder (model.so, meta.json, model.onnx). `certify` runs Cohen et al.'s
CERTIFY for each image: a class and a certified L2 radius, or an abstention; rows go to
RESULTS.tsv (the layout of Cohen et al.'s code, plus nA and n) and the run's seed, sigma, alpha
and the sampler's TV bound to RESULTS.tsv.json. `report` prints the certified accuracy at each
radius. Tutorial 06 explains how to read one certificate.
"""

import os
from pathlib import Path

from tvm_intsmooth.assets import DEMO_DATA, DEMO_MODEL
from tvm_intsmooth.cli.main import run as intsmooth  # `intsmooth ARGS...` from Python

SMALL = os.environ.get("INTSMOOTH_TUTORIAL_SMALL") == "1"  # the tests' setting
N, IMAGES, CALIB = (300, 3, 100) if SMALL else (10_000, 20, 500)
OUT = Path(os.environ.get("INTSMOOTH_TUTORIAL_OUT", "tutorial-output")) / "01_quickstart"


OUT.mkdir(parents=True, exist_ok=True)
artifact, results = OUT / "fmnist_cnn.host", OUT / "results.tsv"
results.unlink(missing_ok=True)  # a rerun starts afresh instead of resuming
Path(f"{results}.json").unlink(missing_ok=True)
intsmooth(
    "compile", DEMO_MODEL, "--sigma", 0.25, "--calib", DEMO_DATA, "--calib-images", CALIB,
    "-o", artifact,
)  # fmt: skip
# No --seed: a fresh 64-bit seed comes from the OS and is written to results.tsv.json.
intsmooth(
    "certify", artifact, "--data", DEMO_DATA, "--skip", 25, "--max-images", IMAGES,
    "--n0", 100, "--n", N, "--alpha", 0.001, "-o", results,
)  # fmt: skip
intsmooth("report", results)
