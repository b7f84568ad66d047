"""The emulated Raspberry Pi's files: an arm64 Debian root and aarch64 TVM wheels, cached once.

``debootstrap`` downloads the arm64 packages of Debian's minimal base plus
Python 3.11 (``--download-only``: the second stage cannot run without binfmt_misc, and the
download needs no root), ``dpkg -x`` unpacks them, and the aarch64 wheels of the host's own TVM,
tvm-ffi, numpy and ml_dtypes versions are unzipped beside the root. About 150 MB of downloads,
600 MB on disk, kept under the user's cache folder.

Layout of the cache folder: ``<tag>/root`` (the Debian root), ``<tag>/site`` (the wheels),
``<tag>/complete.json`` (written last: its absence means a half-prepared cache, which the next
preparation removes and redoes; it records the SHA-256 of the interpreter, the C library and
TVM's libraries, which every start checks: a file of the same size but other content is refused)
and ``<tag>.lock`` (held while preparing, so that emulators
started at the same moment share one preparation). ``<tag>`` names the Debian suite and the TVM
version, so that a TVM upgrade prepares a new root instead of changing one in use.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tvm_intsmooth.errors import IntSmoothError
from tvm_intsmooth.runtime.artifact import file_sha256

SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEB_INCLUDE = ["python3.11", "libpython3.11-stdlib", "libstdc++6"]
WHEELS = ["apache-tvm", "apache-tvm-ffi", "numpy", "ml_dtypes", "typing_extensions"]
WHEEL_PLATFORM = "manylinux_2_28_aarch64"
GUEST_PYTHON = "usr/bin/python3.11"
QEMU = "qemu-aarch64-static"
# Debian package of each tool the preparation and the emulator run (.ci/install installs them).
TOOLS = {"debootstrap": "debootstrap", "dpkg-deb": "dpkg", QEMU: "qemu-user-static"}
# Checked by content on every start: the interpreter, the C library and TVM's shared libraries.
ESSENTIAL = [
    f"root/{GUEST_PYTHON}",
    "root/lib/ld-linux-aarch64.so.1",
    "site/tvm/lib/libtvm_compiler.so",
    "site/tvm/lib/libtvm_runtime.so",
    "site/tvm_ffi/lib/libtvm_ffi.so",
]
Progress = Callable[[str], None]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tvm_intsmooth/emulated-pi`` (``~/.cache/...`` without XDG)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tvm_intsmooth" / "emulated-pi"


def wheel_versions() -> dict[str, str]:
    """The aarch64 wheels to install: the host's own version of each (same TVM on both ends)."""
    versions = {}
    for name in WHEELS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise IntSmoothError(
                f"the emulated Pi installs the host's version of {name}, but {name} is not "
                "installed here: install tvm_intsmooth with its dependencies (.ci/install)."
            ) from None
    return versions


@dataclass(frozen=True)
class EmulatorRoot:
    """A prepared cache: run ``qemu-aarch64-static -L root root/usr/bin/python3.11``."""

    folder: Path

    @property
    def root(self) -> Path:
        return self.folder / "root"

    @property
    def site(self) -> Path:
        return self.folder / "site"

    @property
    def marker(self) -> Path:
        return self.folder / "complete.json"

    @property
    def completed(self) -> bool:
        """Whether the cache was completed, by this version: a marker that records the files'
        SHA-256 (a cache of an earlier version, whose marker records sizes, is prepared again)."""
        try:
            return "sha256" in json.loads(self.marker.read_text())
        except (OSError, ValueError, TypeError):
            return False

    def command(self, *args: str) -> list[str]:
        """The command line running the guest Python with ``args``."""
        return [QEMU, "-L", str(self.root), str(self.root / GUEST_PYTHON), *args]

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A clean environment for the guest Python (nothing of the host's Python leaks in)."""
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONHOME": "/usr",
            "PYTHONPATH": str(self.site),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
        }
        return {**env, **(extra or {})}

    def check(self) -> None:
        """Raise IntSmoothError when the prepared cache has lost or changed a file (by its
        SHA-256, recorded when it was prepared)."""
        try:
            recorded = json.loads(self.marker.read_text())["sha256"]
            if not isinstance(recorded, dict) or set(recorded) != set(ESSENTIAL):
                raise ValueError("it does not list the files to check")
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise _corrupt(self.folder, f"its completion marker is unreadable ({err})") from None
        for rel, digest in recorded.items():
            path = self.folder / rel
            if not path.is_file():
                raise _corrupt(self.folder, f"{rel} is missing")
            if file_sha256(path) != digest:
                raise _corrupt(self.folder, f"{rel} is not the file prepared (its SHA-256 differs)")


def _corrupt(folder: Path, what: str) -> IntSmoothError:
    return IntSmoothError(
        f"the emulated Pi's cache {folder} is corrupt: {what}. Remove that folder (or run "
        "`intsmooth emulate-pi` with --refresh) and it is prepared again (about 150 MB)."
    )


def cache_tag(versions: dict[str, str]) -> str:
    return f"{SUITE}-arm64-tvm{versions['apache-tvm']}-ffi{versions['apache-tvm-ffi']}"


def find_root(cache_dir: str | os.PathLike | None = None) -> EmulatorRoot:
    """The prepared cache in ``cache_dir``; IntSmoothError when it is missing or corrupt."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    emu = EmulatorRoot(cache / cache_tag(wheel_versions()))
    if not emu.completed:
        raise IntSmoothError(
            f"the emulated Pi's cache {emu.folder} is missing, was never completed or was "
            "prepared by an earlier version: run "
            "`intsmooth emulate-pi` once to prepare it (about 150 MB of downloads)."
        )
    emu.check()
    return emu


def prepare(
    cache_dir: str | os.PathLike | None = None,
    *,
    mirror: str = DEBIAN_MIRROR,
    refresh: bool = False,
    progress: Progress | None = None,
) -> EmulatorRoot:
    """Prepare the emulated Pi's files once and return them (see the module docstring).

    Safe to call from several processes at once: one prepares under a file lock, the others wait
    and reuse its result. A cache left half-prepared (no completion marker), or prepared by an
    earlier version (a marker without the files' SHA-256), is removed and prepared again; a
    completed one is only checked (``refresh`` prepares it again anyway).

    Raises:
        IntSmoothError: a tool is missing, a download fails, or the completed cache is corrupt.
    """
    say = progress or (lambda text: None)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    versions = wheel_versions()
    emu = EmulatorRoot(cache / cache_tag(versions))
    if emu.completed and not refresh:
        emu.check()
        return emu
    _check_tools()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{emu.folder.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another process that is preparing {emu.folder}")
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when it finishes or dies
        if refresh or not emu.completed:
            _prepare_unlocked(emu, versions, mirror, say)
    emu.check()
    return emu


def _check_tools() -> None:
    missing = [pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        raise IntSmoothError(
            f"the emulated Pi needs the Debian packages {', '.join(missing)}, which are not "
            f"installed: run .ci/install, or apt-get install {' '.join(missing)}."
        )


def _prepare_unlocked(emu: EmulatorRoot, versions: dict, mirror: str, say: Progress) -> None:
    emu.marker.unlink(missing_ok=True)
    shutil.rmtree(emu.folder, ignore_errors=True)  # whatever a killed preparation left
    emu.root.mkdir(parents=True)
    say(f"preparing the emulated Raspberry Pi in {emu.folder} (once; about 150 MB of downloads)")
    say(f"[1/4] downloading the arm64 Debian {SUITE} packages from {mirror}")
    archives = emu.root / "var/cache/apt/archives"
    _run(
        [
            "debootstrap",
            "--arch=arm64",
            "--variant=minbase",
            "--download-only",
            f"--include={','.join(DEB_INCLUDE)}",
            SUITE,
            str(emu.root),
            mirror,
        ],
        f"downloading the arm64 Debian packages from {mirror}",
    )
    debs = sorted(archives.glob("*.deb"))
    say(f"[2/4] unpacking {len(debs)} Debian packages")
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(emu.root)], f"unpacking {deb.name}")
        deb.unlink()
    wheels = emu.folder / "wheels"
    say(f"[3/4] downloading the aarch64 wheels of TVM {versions['apache-tvm']} and numpy")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            WHEEL_PLATFORM,
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "-d",
            str(wheels),
            *(f"{name}=={version}" for name, version in versions.items()),
        ],
        "downloading the aarch64 wheels from PyPI",
    )
    say("[4/4] unpacking the wheels")
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(emu.site)
    shutil.rmtree(wheels)
    _compile_bytecode(emu.site, emu.root / "usr/lib/python3.11")
    digests = {rel: file_sha256(emu.folder / rel) for rel in ESSENTIAL}
    marker = {"suite": SUITE, "mirror": mirror, "wheels": versions, "sha256": digests}
    tmp = emu.marker.with_suffix(".partial")
    tmp.write_text(json.dumps(marker, indent=1))
    tmp.replace(emu.marker)  # last: a cache without it is half-prepared
    say(f"the emulated Raspberry Pi is ready in {emu.folder}")


def _compile_bytecode(*folders: Path) -> None:
    """Compile the bytecode of the wheels and the guest's standard library with the host's
    Python when it is the guest's version (3.11), so that the emulated ``import tvm`` does not
    spend most of a minute compiling under emulation."""
    if sys.version_info[:2] == (3, 11):
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "-j", "0", *map(str, folders)],
            check=False,
            capture_output=True,
        )


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise IntSmoothError(
            f"preparing the emulated Pi failed while {what} ({cmd[0]} exited with "
            f"{proc.returncode}: {tail}). Check the network access to Debian's mirror and PyPI "
            "and run the command again: the half-prepared cache is redone."
        )
