"""Tutorial 03: a Raspberry Pi 4 or 5 as the target.

    python tutorials/03_raspberry_pi.py      # needs aarch64-linux-gnu-gcc (gcc-aarch64-linux-gnu)

Part 1, cross-compiling (here): the bundled targets `rpi4` (Cortex-A72, NEON) and `rpi5`
(Cortex-A76, NEON with the sdot dot product) are JSON files in targets/; `--target rpi5` builds the
smoothed classifier for the board and links it with the aarch64 cross compiler. The artifact
folder is the same as for the host: copy it to the board, where `SmoothedClassifier.load` reads
it with TVM's runtime. Every operation is integer, so the board counts exactly the votes that the
host would for the same seed and streams.

Part 2, running it on the board over TVM RPC: see the marked place at the end.
"""

import json
import os
import shutil
from pathlib import Path

from tvm_intsmooth.assets import DEMO_DATA, DEMO_MODEL
from tvm_intsmooth.cli.main import main

OUT = Path(os.environ.get("INTSMOOTH_TUTORIAL_OUT", "tutorial-output")) / "03_raspberry_pi"
TARGET = "rpi5"

if shutil.which("aarch64-linux-gnu-gcc") is None:
    raise SystemExit("install the cross compiler first: apt-get install gcc-aarch64-linux-gnu")

OUT.mkdir(parents=True, exist_ok=True)
artifact = OUT / f"fmnist_cnn.{TARGET}"
args = ["compile", DEMO_MODEL, "--sigma", 0.25, "--calib", DEMO_DATA, "--calib-max", 200]
code = main([str(a) for a in [*args, "--target", TARGET, "-o", artifact]])
if code:
    raise SystemExit(code)

header = (artifact / "model.so").read_bytes()[:20]
machine = int.from_bytes(header[18:20], "little")  # ELF e_machine: 183 is AArch64
meta = json.loads((artifact / "meta.json").read_text())
print(f"{artifact / 'model.so'}: ELF for {'AArch64' if machine == 183 else machine}")
print(f"target {meta['target']}: {meta['target_config']}")
print(f"copy {artifact} to the board and load it there with SmoothedClassifier.load(...)")

# ---------------------------------------------------------------------------------------------
# Part 2, RPC: TO BE COMPLETED when the RPC work (issue 10: tvm_intsmooth/remote, `--rpc`,
# the emulated Pi) lands. It will show the same artifact certified from this host while the
# board (or the emulated Pi) runs the library, with the counts checked against the host's.
# ---------------------------------------------------------------------------------------------
