"""Remote devices over TVM RPC: sessions, an emulated Raspberry Pi, benchmarks, sharded certify.

- :class:`Device` (session.py): one RPC server, or a tracker key; ``Device.open()`` -> session.
  :func:`load_artifact` ``(artifact, session)`` runs an artifact on that session's device.
- :class:`EmulatedPi` (emulated_pi.py): aarch64 Debian under qemu-user serving TVM RPC on
  127.0.0.1, from a cache prepared once (emulator_cache.py).
- :func:`benchmark` (bench.py): TVM's time_evaluator on a device.
- :class:`RemoteCertifier` / :func:`certify_remote` (remote_pool.py): a smoothed classifier
  whose certification is sharded over the servers of a tracker key.
"""

from tvm_intsmooth.remote.bench import BenchResult, benchmark
from tvm_intsmooth.remote.emulated_pi import EmulatedPi
from tvm_intsmooth.remote.emulator_cache import default_cache_dir, prepare
from tvm_intsmooth.remote.remote_pool import RemoteCertifier, certify_remote
from tvm_intsmooth.remote.session import Device, device_report, load_artifact

__all__ = [
    "BenchResult",
    "Device",
    "EmulatedPi",
    "RemoteCertifier",
    "benchmark",
    "certify_remote",
    "default_cache_dir",
    "device_report",
    "load_artifact",
    "prepare",
]
