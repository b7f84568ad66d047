"""Remote devices over TVM RPC: sessions, an emulated Raspberry Pi, benchmarks, sharded certify.

- :class:`Device` (session.py): one RPC server, or a tracker key; ``Device.open()`` -> session.
  ``SmoothedClassifier.load(artifact, session=...)`` runs an artifact on that session's device.
- :class:`EmulatedPi` (emulated_pi.py): aarch64 Debian under qemu-user serving TVM RPC on
  127.0.0.1, from a cache prepared once (emulator_cache.py).
- :func:`benchmark` (bench.py): TVM's time_evaluator on a device.
- :class:`RemoteCertifier` / :func:`certify_remote` (remote_pool.py): certification sharded
  over the servers of a tracker key.
"""

from .bench import BenchResult, benchmark
from .emulated_pi import EmulatedPi
from .emulator_cache import default_cache_dir, prepare
from .remote_pool import CertifyJob, RemoteCertifier, certify_remote
from .session import Device, device_report

__all__ = [
    "BenchResult",
    "CertifyJob",
    "Device",
    "EmulatedPi",
    "RemoteCertifier",
    "benchmark",
    "certify_remote",
    "default_cache_dir",
    "device_report",
    "prepare",
]
