"""Tutorial 05: the tvm_intsmooth passes inside your own TVM pipeline.

    python tutorials/05_passes_in_your_pipeline.py      # about two minutes on a laptop CPU
    INTSMOOTH_TUTORIAL_SMALL=1 python tutorials/05_passes_in_your_pipeline.py  # fast mode

Fast mode: n = 300.

Part 1, the passes one by one:

1. import an ONNX classifier as a float Relax module (TVM's from_onnx) and canonicalize it;
2. calibrate it and rewrite it into integer-only arithmetic with QuantizeToInteger;
3. compose InjectIntegerNoise and CountVotes with any other pass in a tvm.transform.Sequential;
4. build, and certify one image with SmoothedClassifier.certify (Cohen et al.'s CERTIFY).

Part 2, the registered pipeline: ``tvm.relax.get_pipeline("intsmooth", ...)`` is all of that as
one pass (quantize, noise, votes, then the target's build phases) for ``tvm.compile``, with an
optional IR dump after each phase (tvm_intsmooth.pipeline.PHASES names them). Calibration runs
the float model, so it is a step before compiling, and its result goes into the pipeline.
(Part 1 calibrates on clean images for brevity; Part 2, like ``intsmooth compile``, on noisy
copies, which suits the noisy inputs better.)
"""

import os

import numpy as np
import tvm
from tvm import relax

from tvm_intsmooth import SmoothedClassifier, build, calibrate, check_integer_only
from tvm_intsmooth.assets import DEMO_DATA, DEMO_MODEL
from tvm_intsmooth.data import load_npz
from tvm_intsmooth.pipeline import canonical_model
from tvm_intsmooth.transform import CountVotes, InjectIntegerNoise, QuantizeToInteger

SIGMA, BATCH = 0.25, 100
N = 300 if os.environ.get("INTSMOOTH_TUTORIAL_SMALL") == "1" else 2000  # the tests use 300

images, labels = load_npz(DEMO_DATA)
# TVM's from_onnx, then the canonicalize phase (the forms QuantizeToInteger reads): calibration
# keys its ranges by this module's variable names, so the passes below must get the same module.
imported = canonical_model(DEMO_MODEL)  # float Relax, batch dimension symbolic
ranges = calibrate(imported, images[:200]).ranges  # max |activation| per float variable

noise = InjectIntegerNoise(SIGMA, BATCH)  # its .table holds the thresholds and the TV bound
pipeline = tvm.transform.Sequential(
    [
        QuantizeToInteger(ranges, input_dtype="int16"),  # int16: room for noisy pixels
        noise,
        CountVotes(),
        relax.transform.DeadCodeElimination(),  # any pass of your own fits here too
    ]
)
mod = pipeline(imported.mod)
assert check_integer_only(mod) == [], "no floating point anywhere in the graph"
print(mod["main"].script()[:600], "...\n")

meta = {
    "input_shape": imported.input_shape,
    "num_classes": imported.num_classes,
    "batch": BATCH,
    "sigma": SIGMA,
    "tv_bound": noise.table.tv_bound(int(np.prod(imported.input_shape))),
}
classifier = SmoothedClassifier(relax.VirtualMachine(build(mod, "host"), tvm.cpu()), meta)
# n0 = 100 samples choose the class, n = N fresh ones bound its probability; the seed and the
# image's dataset index pick the noise streams, so the certificate can be replayed.
cert = classifier.certify(images[0], 100, N, alpha=0.001, index=0, seed=2026)
print(
    f"label {labels[0]}: prediction {cert.prediction}, certified L2 radius {cert.radius:.3f} "
    f"(pA >= {cert.p_a_lower:.4f} from {cert.n_a}/{cert.n} votes)"
)

# Part 2: the registered pipeline. Importing tvm_intsmooth (after tvm) registered "intsmooth".
dump = os.path.join(os.environ.get("INTSMOOTH_TUTORIAL_OUT", "tutorial-output"), "05_ir")
calibration = calibrate(imported, images[:200], sigma=SIGMA)  # on noisy copies
smoothing = relax.get_pipeline(
    "intsmooth", sigma=SIGMA, calibration=calibration, batch=BATCH, dump_ir=dump
)
print(f"noise table: K = {smoothing.table.K}, {smoothing.table.bits}-bit thresholds")
executable = tvm.compile(imported.mod, target="llvm", relax_pipeline=smoothing)
classifier = SmoothedClassifier(relax.VirtualMachine(executable, tvm.cpu()), smoothing.metadata())
cert = classifier.certify(images[0], 100, N, alpha=0.001, index=0, seed=2026)
print(f"registered pipeline: prediction {cert.prediction}, radius {cert.radius:.3f}")
print(f"IR after each phase in {dump}: {', '.join(sorted(os.listdir(dump)))}")
