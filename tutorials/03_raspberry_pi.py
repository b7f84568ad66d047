"""Tutorial 03: a Raspberry Pi 4 or 5 as the target.

    python tutorials/03_raspberry_pi.py      # needs aarch64-linux-gnu-gcc (gcc-aarch64-linux-gnu)
    INTSMOOTH_TUTORIAL_SMALL=1 python tutorials/03_raspberry_pi.py  # fast mode

Fast mode: n = 200, 2 images.

Part 1, cross-compiling (here): the bundled targets `rpi4` (Cortex-A72, NEON) and `rpi5`
(Cortex-A76, NEON with the sdot dot product) are JSON files in targets/; `--target rpi5` builds the
smoothed classifier for the board and links it with the aarch64 cross compiler. The artifact
folder is the same as for the host: copy it to the board, where `SmoothedClassifier.load` reads
it with TVM's runtime. Every operation is integer, so the board counts exactly the votes that the
host would for the same seed and streams.

Part 2, running it on the board over TVM RPC: this host certifies while the board runs the
library. A TVM RPC server runs any code that any client sends it, so it must not be reachable
by others: on the board `python -m tvm.exec.rpc_server --host 127.0.0.1 --port 9090`, here an
SSH tunnel to it (`ssh -N -L 9090:127.0.0.1:9090 BOARD &`), then
`INTSMOOTH_PI=127.0.0.1:9090 python tutorials/03_raspberry_pi.py`. The host recomputes a random
share of the board's vote batches (`--verify`, README) and refuses an image whose counts differ.
Without INTSMOOTH_PI an emulated Pi (aarch64 Debian under qemu-user, `intsmooth emulate-pi` on
127.0.0.1; prepared once, about 150 MB of downloads) stands in: exact, but its speed means
nothing.
"""

import contextlib
import gc
import json
import os
import shutil
import socket
from pathlib import Path

from tvm_intsmooth.assets import DEMO_DATA, DEMO_MODEL
from tvm_intsmooth.cli.main import main
from tvm_intsmooth.data import load_npz
from tvm_intsmooth.remote import Device, EmulatedPi, device_report, load_artifact
from tvm_intsmooth.runtime import SmoothedClassifier

OUT = Path(os.environ.get("INTSMOOTH_TUTORIAL_OUT", "tutorial-output")) / "03_raspberry_pi"
TARGET = "rpi5"

if shutil.which("aarch64-linux-gnu-gcc") is None:
    raise SystemExit("install the cross compiler first: apt-get install gcc-aarch64-linux-gnu")

OUT.mkdir(parents=True, exist_ok=True)
artifact = OUT / f"fmnist_cnn.{TARGET}"
args = ["compile", DEMO_MODEL, "--sigma", 0.25, "--calib", DEMO_DATA, "--calib-images", 200]
code = main([str(a) for a in [*args, "--target", TARGET, "-o", artifact]])
if code:
    raise SystemExit(code)

header = (artifact / "model.so").read_bytes()[:20]
machine = int.from_bytes(header[18:20], "little")  # ELF e_machine: 183 is AArch64
meta = json.loads((artifact / "meta.json").read_text())
print(f"{artifact / 'model.so'}: ELF for {'AArch64' if machine == 183 else machine}")
print(f"target {meta['target']}: {meta['target_config']}")
print(f"copy {artifact} to the board and load it there with SmoothedClassifier.load(...)")

# Part 2: the same artifact on the board over TVM RPC, certified from here. The board's certificates
# equal this host's (the x86 build of the same model) for the same seed: every operation is integer.
SMALL = os.environ.get("INTSMOOTH_TUTORIAL_SMALL") == "1"  # the tests' setting
N, IMAGES, SEED = (200, 2, 2024) if SMALL else (2000, 5, 2024)
host_artifact = OUT / "fmnist_cnn.host"
code = main([str(a) for a in [*args, "--target", "host", "-o", host_artifact]])
if code:
    raise SystemExit(code)

with contextlib.ExitStack() as stack:
    address = os.environ.get("INTSMOOTH_PI")
    if not address:
        with socket.socket() as sock:  # a free port for the emulated Pi
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        print("starting an emulated Raspberry Pi (qemu-user)...", flush=True)
        pi = stack.enter_context(EmulatedPi(port, progress=print))
        address = f"127.0.0.1:{port}"
    session = Device.parse(rpc=address).open()
    print(f"device at {address}: {device_report(session)['name']}")
    board = load_artifact(artifact, session)  # uploaded to the board
    host = SmoothedClassifier.load(host_artifact)
    x, y = load_npz(DEMO_DATA)
    for i in range(IMAGES):
        on_board = board.certify(x[i], 100, N, 0.001, index=i, seed=SEED)
        here = host.certify(x[i], 100, N, 0.001, index=i, seed=SEED)
        print(f"image {i}: board {on_board.prediction} (nA {on_board.n_a}), host {here.prediction}")
        assert on_board == here, (on_board, here)
    print("the board's certificates equal the host's")
    del board, session  # a TVM RPC server serves one session at a time: end this one
    gc.collect()
    print(f"$ intsmooth bench {artifact} --rpc {address}")
    main(["bench", str(artifact), "--rpc", address, "--n", "64", "--repeat", "3"])
