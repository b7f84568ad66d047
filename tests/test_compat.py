"""filtered_stderr drops the known-harmless C++ warnings written to fd 2 and nothing else."""

import os
import subprocess
import sys
import time

from tvm_intsmooth.compat import filtered_stderr

TENSORIZE = (
    b"[08:51:30] /project/src/s_tir/meta_schedule/postproc/rewrite_tensorize.cc:50: "
    b"Warning: Tensorize failed with error (not rendered)\n"
)


def test_drops_tensorize_warnings_from_this_process_and_children(capfd):
    with filtered_stderr():
        os.write(2, b"kept 1\n" + TENSORIZE)
        os.write(2, b"\rtuning 10%")
        os.write(2, b"\rtuning 20%\n")
        os.write(2, TENSORIZE[:40])  # a C++ line may arrive in pieces
        os.write(2, TENSORIZE[40:] + b"[12:00:00] another warning\n")
        subprocess.run([sys.executable, "-c", f"import os; os.write(2, {TENSORIZE!r} + b'c\\n')"])
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert err == "kept 1\n\rtuning 10%\rtuning 20%\n[12:00:00] another warning\nc\nafter\n"


def test_a_partial_line_reaches_stderr_before_the_block_ends(capfd):
    """A progress bar redraws with \\r and no newline: it must not wait for one."""
    with filtered_stderr():
        os.write(2, b"\rtuning 50%")
        deadline = time.monotonic() + 5
        seen = ""
        while "tuning 50%" not in seen and time.monotonic() < deadline:
            seen += capfd.readouterr().err
    assert "tuning 50%" in seen
