"""Drop known-harmless warnings that TVM's C++ code writes straight to file descriptor 2.

MetaSchedule's RewriteTensorize postprocessor logs ``Tensorize failed`` for every sampled
candidate whose tiling does not fit the intrinsic (hundreds per tuning run); the candidate is
simply discarded. C++ logging bypasses Python's ``logging`` and ``sys.stderr``, so the only way
to keep a progress bar readable is to filter the descriptor itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

HARMLESS = (re.compile(rb"rewrite_tensorize\.cc:\d+: Warning: Tensorize failed"),)


def _forward(read_fd: int, write_fd: int, patterns) -> None:
    """Copy ``read_fd`` to ``write_fd`` until EOF, without the lines that match ``patterns``.

    Text without a newline is passed on at once (progress bars redraw with ``\\r``), except a
    trailing piece that starts like a log line (``[``), which waits for the rest of its line.
    """

    def kept(line: bytes) -> bool:
        return not any(p.search(line) for p in patterns)

    pending = b""
    while chunk := os.read(read_fd, 65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        out = b"".join(line + b"\n" for line in lines if kept(line))
        if pending and not pending.startswith(b"["):
            out, pending = out + pending, b""
        if out:
            os.write(write_fd, out)
    if pending and kept(pending):
        os.write(write_fd, pending)


@contextlib.contextmanager
def filtered_stderr(patterns=HARMLESS) -> Iterator[None]:
    """Within the block, lines written to file descriptor 2 (by Python or C++) that match one
    of ``patterns`` are dropped; everything else reaches the real stderr unchanged."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    thread = threading.Thread(target=_forward, args=(read_fd, saved, patterns), daemon=True)
    thread.start()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)  # drops our write end of the pipe
        # Worker processes started inside the block (MetaSchedule's builder pool) hold write
        # ends of their own: while one lives, the thread keeps forwarding for it.
        thread.join(timeout=1.0)
        if not thread.is_alive():
            os.close(read_fd)
            os.close(saved)
