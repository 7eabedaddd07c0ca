"""A run's scratch (its working folder, outputs and temporary files) on a filesystem of
its own, of a fixed size: a run that fills it fails, and the host's disk stays free.

The filesystem is an ext4 image in a sparse file, loop-mounted (root only; where
runyard cannot mount, the scratch is a plain folder and says so). The image only
takes the space the run writes, up to its size.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

FOLDERS = ("work", "outputs", "tmp")
_FULL_MARGIN = 1 << 20  # free bytes under which the scratch counts as filled


def make(path: Path, size: int) -> bool:
    """Make the scratch at `path` with its folders; True when it is bounded to `size`."""
    path.mkdir()
    bounded = os.geteuid() == 0 and _mount(path, size)
    for name in FOLDERS:
        (path / name).mkdir()
        (path / name).chmod(0o1777 if name == "tmp" else 0o777)  # the container runs as nobody
    return bounded


def is_full(path: Path) -> bool:
    with contextlib.suppress(OSError):
        if os.path.ismount(path):
            stats = os.statvfs(path)
            return stats.f_bavail * stats.f_frsize < _FULL_MARGIN
    return False


def remove(path: Path, mounted: bool = False) -> None:
    """Unmount and delete a scratch, mounted or not (also one a lost runner left);
    `mounted` when the kernel's table says so (os.path.ismount misses a bind mount of
    the same disk, as trial workers make: runner/run/workers.py)."""
    if mounted or os.path.ismount(path):
        subprocess.run(["umount", "--lazy", str(path)], capture_output=True, check=False)
    _image(path).unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)


def mounted_under(folder: Path) -> list[Path]:
    """Scratch mounts below `folder`, from the kernel's table."""
    prefix = f"{folder.resolve()}/"
    try:
        table = Path("/proc/self/mounts").read_text()
    except OSError:
        return []
    points = (line.split()[1].replace("\\040", " ") for line in table.splitlines())
    return [Path(point) for point in points if point.startswith(prefix)]


def _image(path: Path) -> Path:
    return path.with_name(path.name + ".img")


def _mount(path: Path, size: int) -> bool:
    image = _image(path)
    with image.open("wb") as handle:
        handle.truncate(size)
    made = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", str(image)],
                          capture_output=True, check=False)
    if made.returncode == 0:
        mounted = subprocess.run(["mount", "-o", "loop,nosuid,nodev", str(image), str(path)],
                                 capture_output=True, check=False)
        if mounted.returncode == 0:
            shutil.rmtree(path / "lost+found", ignore_errors=True)
            return True
    image.unlink(missing_ok=True)
    return False
