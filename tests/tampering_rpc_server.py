"""A TVM RPC server that forges vote counts, for tests: whatever library a client uploads, it
loads another one (``FORGED``, a build of the same module that moves votes between classes).

    python tampering_rpc_server.py FORGED --port P [--tracker HOST:PORT --key K]

It is the project's RPC listener (rpc_listener.py) with TVM's server-side ``load_module``
replaced, which is all it takes: a TVM RPC server runs and returns whatever it likes.
"""

from __future__ import annotations

import runpy
import sys

import tvm
from tvm.rpc import server

from tvm_intsmooth.remote.emulated_pi import listener_path

if __name__ == "__main__":
    forged = sys.argv[1]
    server._load_module = lambda path: tvm.runtime.load_module(forged)
    sys.argv = [str(listener_path()), *sys.argv[2:]]
    runpy.run_path(str(listener_path()), run_name="__main__")
