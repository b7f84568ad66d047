"""The facts a certificate depends on, compiled into the smoothed classifier's library itself.

A compiled library draws noise from the thresholds it was built with, so its sigma, sampler bits,
K, batch, clip policy, input shape and class count must be those that the certificate uses. They
are written into the module as a Relax function ``intsmooth_facts() -> int64[F]`` (the
AddArtifactFacts pass), which the loader calls and compares with meta.json
(``runtime.artifact.ArtifactMeta.check_facts``): a library placed next to another artifact's
meta.json, or an edited sigma, is refused instead of certifying a wrong radius. The thresholds
themselves are represented by a 63-bit SHA-256 digest of the table.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.smoothing.noise_table import NoiseTable

FACTS_FUNCTION = "intsmooth_facts"
FACTS_VERSION = 1
CLIP_CODES = {"none": 0, "clip": 1}


def table_digest(table: NoiseTable) -> int:
    """63 bits of the SHA-256 of the table (step, bits, K and every threshold)."""
    text = f"{table.step.numerator}/{table.step.denominator};{table.bits};{table.K};"
    text += ",".join(map(str, table.thresholds))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


@dataclass(frozen=True)
class ArtifactFacts:
    """What a compiled smoothed classifier says about itself."""

    sigma: float
    bits: int
    K: int
    batch: int
    clip: str
    num_classes: int
    input_shape: tuple[int, ...]
    table_digest: int

    @classmethod
    def of(cls, table: NoiseTable, batch: int, clip: str, input_shape, num_classes: int):
        return cls(
            float(table.sigma),
            table.bits,
            table.K,
            int(batch),
            clip,
            int(num_classes),
            tuple(int(d) for d in input_shape),
            table_digest(table),
        )

    def to_array(self) -> np.ndarray:
        sigma_bits = int(np.array(self.sigma, np.float64).view(np.int64))
        head = [FACTS_VERSION, sigma_bits, self.bits, self.K, self.batch, CLIP_CODES[self.clip]]
        tail = [self.num_classes, self.table_digest, len(self.input_shape), *self.input_shape]
        return np.array(head + tail, np.int64)

    @classmethod
    def from_array(cls, values: np.ndarray) -> ArtifactFacts:
        v = [int(x) for x in np.asarray(values, np.int64)]
        if len(v) < 9 or v[0] != FACTS_VERSION or len(v) != 9 + v[8]:
            raise IntSmoothError(
                f"the library's {FACTS_FUNCTION} has an unknown layout {v[:9]}; compile the "
                "artifact again with this version of tvm_intsmooth"
            )
        clip = {code: name for name, code in CLIP_CODES.items()}.get(v[5])
        sigma = float(np.array(v[1], np.int64).view(np.float64))
        return cls(sigma, v[2], v[3], v[4], clip, v[6], tuple(v[9:]), v[7])
