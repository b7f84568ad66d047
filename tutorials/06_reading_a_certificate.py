"""Tutorial 06: reading a certificate: the radius, the sampler's TV bound, seeds and streams.

    python tutorials/06_reading_a_certificate.py      # about 5 minutes (n = 100,000)
    INTSMOOTH_TUTORIAL_SMALL=1 python tutorials/06_reading_a_certificate.py  # fast mode

Fast mode: n = 500, 60 calibration images.

A certificate (prediction A, radius R) says: the smoothed classifier g(x) = the class the integer
base classifier returns most often under Gaussian noise of level sigma answers A at x and at
every x + delta with ||delta||_2 < R (pixels in [0, 1]), unless this run's noise was among the
unlucky alpha fraction. docs/soundness.md gives the argument; this script takes one certificate
apart and rebuilds it from its pieces.
"""

import os

import numpy as np
from scipy.stats import norm

import tvm_intsmooth as tis
from tvm_intsmooth.assets import DEMO_DATA, DEMO_MODEL
from tvm_intsmooth.certify import lower_confidence_bound
from tvm_intsmooth.data import load_npz

SMALL = os.environ.get("INTSMOOTH_TUTORIAL_SMALL") == "1"  # the tests' setting
N0, N, ALPHA, SIGMA = 100, (500 if SMALL else 100_000), 0.001, 0.25
CALIB = 60 if SMALL else 500
images, labels = load_npz(DEMO_DATA)
classifier = tis.SmoothedClassifier.from_model(tis.smooth(DEMO_MODEL, images[:CALIB], SIGMA))

# The seed: 64 bits, fresh from the OS in real runs (the CLI writes it to RESULTS.tsv.json);
# fixed here so that the tutorial prints the same thing every time.
seed, index = 2026, 17  # index: the image's dataset index
x = images[index]
cert = classifier.certify(x, N0, N, ALPHA, index=index, seed=seed)
print(
    f"image {index} (label {labels[index]}): prediction {cert.prediction}, radius {cert.radius:.4f}"
)

# 1. Streams. CERTIFY chose the class with n0 draws of stream 2*index, then counted it in n
# fresh draws of stream 2*index + 1; PREDICT would use stream 2^63 + index. Disjoint streams
# make the estimation independent of the selection, as Cohen et al.'s argument needs.
selection = classifier.counts(x, N0, seed, stream=2 * index)
estimation = classifier.counts(x, N, seed, stream=2 * index + 1)
guess = int(np.argmax(selection))
assert guess == cert.prediction or cert.abstained
print(f"selection counts (stream {2 * index}): {selection.tolist()}")
print(f"estimation: class {guess} won {estimation[guess]} of {N} draws (stream {2 * index + 1})")

# 2. The lower confidence bound: one-sided Clopper-Pearson at level alpha ...
p_lower = lower_confidence_bound(int(estimation[guess]), N, ALPHA)
# 3. ... minus the sampler's total-variation bound: the integer sampler's thresholds are 64-bit
# roundings of the exact CDF, so its law differs from the exact rounded Gaussian by at most this
# much per noisy sample (all 784 pixels), and every probability moves by at most as much.
tv = classifier.tv_bound
print(
    f"Clopper-Pearson pA >= {p_lower:.6f}; sampler TV bound {tv:.3g}; pA_lower {p_lower - tv:.6f}"
)
assert p_lower - tv == cert.p_a_lower
# 4. The radius: sigma * Phi^-1(pA_lower), or abstain when pA_lower < 1/2.
radius = SIGMA * norm.ppf(p_lower - tv) if p_lower - tv >= 0.5 else 0.0
print(f"radius = {SIGMA} * Phi^-1({p_lower - tv:.6f}) = {radius:.4f}")
assert radius == cert.radius
print(f"in grey levels: an L2 change of up to {255 * radius:.1f} (e.g. one pixel by that much)")

# 5. Replay: the same seed and index give the same certificate, to the bit, on any CPU, batch
# size or thread count. Another seed draws other noise (and may give another radius).
assert classifier.certify(x, N0, N, ALPHA, index=index, seed=seed) == cert
other = classifier.certify(x, N0, N, ALPHA, index=index, seed=seed + 1)
print(f"same seed: same certificate; seed {seed + 1}: radius {other.radius:.4f}")

# What the radius does not say: anything about the base network on one input, that A is the
# true label, anything beyond R or for other norms, or about alpha over many images at once
# (about alpha * N of N certificates may be wrong). See docs/soundness.md, section 6.
