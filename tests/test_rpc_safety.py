"""What a TVM RPC server is, said and enforced: it runs any code that any client sends it.

The documentation says so where servers are started; the emulated Pi and the project's RPC
listener serve 127.0.0.1 and refuse another address without ``--allow-remote-clients`` (before
anything is downloaded); a bad port is a usage error; a tracker that is not up yet is waited for.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rpc_servers import error_line, free_port, intsmooth, rpc_tracker

from tvm_intsmooth.cli.main import make_parser
from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.remote.emulated_pi import EmulatedPi, listener_path
from tvm_intsmooth.remote.session import wait_for_tracker

ROOT = Path(__file__).resolve().parent.parent


def emulate_pi_help() -> str:
    sub = next(a for a in make_parser()._actions if a.dest == "command")
    return " ".join(sub.choices["emulate-pi"].format_help().split())


@pytest.mark.parametrize(
    "text",
    [
        lambda: (ROOT / "README.md").read_text(),
        lambda: (ROOT / "tutorials" / "03_raspberry_pi.py").read_text(),
        emulate_pi_help,
    ],
    ids=["README", "tutorial-03", "emulate-pi-help"],
)
def test_docs_say_an_rpc_server_runs_any_code(text):
    words = " ".join(text().split())
    assert "runs any code that any client sends it" in words
    assert "SSH tunnel" in words and "127.0.0.1" in words
    assert "--host 0.0.0.0" not in words


def test_emulate_pi_refuses_a_public_address_before_downloading(tmp_path):
    cache = tmp_path / "cache"
    proc = intsmooth("emulate-pi", "--port", free_port(), "--host", "0.0.0.0", "--cache", cache)
    line = error_line(proc)
    assert "0.0.0.0" in line and "--allow-remote-clients" in line and "SSH tunnel" in line
    assert not cache.exists()  # nothing prepared, nothing downloaded
    with pytest.raises(IntSmoothError, match="any code"):
        EmulatedPi(free_port(), host="0.0.0.0")
    EmulatedPi(free_port(), host="0.0.0.0", allow_remote=True)  # said explicitly: accepted
    EmulatedPi(free_port(), host="localhost")


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_emulate_pi_bad_port_is_a_usage_error(port, tmp_path):
    proc = intsmooth("emulate-pi", "--port", port, "--cache", tmp_path / "cache")
    assert proc.returncode == 2, proc.stderr
    assert "1..65535" in proc.stderr and "Traceback" not in proc.stderr
    assert "damaged" not in proc.stderr and not (tmp_path / "cache").exists()
    with pytest.raises(IntSmoothError, match="1..65535"):
        EmulatedPi(int(port))


def test_rpc_listener_refuses_a_public_address():
    cmd = [sys.executable, str(listener_path()), "--port", str(free_port()), "--host", "0.0.0.0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--allow-remote-clients" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_tracker_that_is_not_up_yet_is_waited_for():
    """TVM's rpc_server retries a tracker that is not up yet; so does emulate-pi."""
    port = free_port()
    start = time.monotonic()
    with pytest.raises(IntSmoothError, match=f"no TVM RPC tracker at 127.0.0.1:{port} after"):
        wait_for_tracker(("127.0.0.1", port), timeout=2)
    assert 2 <= time.monotonic() - start < 30
    lines: list[str] = []
    with rpc_tracker() as (tracker, _):
        # a tracker on a port that comes up 3 s after the wait began
        late = free_port()
        relay = threading.Thread(target=_serve_late, args=(late, tracker), daemon=True)
        relay.start()
        wait_for_tracker(("127.0.0.1", late), timeout=60, say=lines.append)
        relay.join()
    assert lines and "waiting for the TVM RPC tracker" in lines[0]


def _serve_late(port: int, target: tuple[str, int]) -> None:
    """After 3 s, relay the tracker handshake of connections on ``port`` to ``target``, until
    one has been relayed."""
    import socket

    time.sleep(3)
    with socket.create_server(("127.0.0.1", port)) as server:
        server.settimeout(60)
        while True:
            conn, _ = server.accept()
            with conn:
                magic = conn.recv(4)
                if not magic:  # a probe that only connects
                    continue
                with socket.create_connection(target) as upstream:
                    upstream.sendall(magic)
                    conn.sendall(upstream.recv(4))
                return
