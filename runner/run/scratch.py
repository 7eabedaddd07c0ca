"""A run's scratch (its working folder, outputs and temporary files) on a filesystem of
its own, of a fixed size: a run that fills it fails, and the host's disk stays free.

The filesystem is an ext4 image in a sparse file, loop-mounted (root only; where
runyard cannot mount, the scratch is a plain folder and says so). The image only
takes the space the run writes, up to its size. An empty image of each size is made
once (mkfs) and kept in a templates folder; each scratch starts as a copy of it (its
data, about a megabyte, not its holes) mounted with system calls (mounts.py): no
process a run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import threading
from pathlib import Path

from runner.errors import RunyardError
from runner.record.owner import Owner
from runner.run.mounts import MS_NODEV, MS_NOSUID, mount_image, unmount

FOLDERS = ("work", "outputs", "tmp")
TEMPLATES = "templates"  # the folder of the empty images, beside the runners' scratch folders
_FULL_MARGIN = 1 << 20  # free bytes under which the scratch counts as filled


def make(path: Path, size: int, templates: Path) -> bool:
    """Make the scratch at `path` with its folders; True when it is bounded to `size`.
    `templates`: the folder of the empty images its file system is copied from."""
    path.mkdir()
    bounded = os.geteuid() == 0 and _mount(path, size, templates)
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
        unmount(path)
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


def unfinished_templates(templates: Path) -> dict[Path, Owner]:
    """The templates being made (or that a runner killed meanwhile left), and their runners."""
    found = {}
    for path in templates.glob("*.img.*") if templates.is_dir() else ():
        owner = Owner.from_folder_name(path.name.partition(".img.")[2].rpartition(".")[0])
        if owner is not None:
            found[path] = owner
    return found


def _image(path: Path) -> Path:
    return path.with_name(path.name + ".img")


def _mount(path: Path, size: int, templates: Path) -> bool:
    for fresh in (False, True):  # a template that does not mount is made again, once
        try:
            if _mounted_copy(path, _template(templates, size, fresh)):
                shutil.rmtree(path / "lost+found", ignore_errors=True)
                return True
        except OSError:
            pass
    return False


def _mounted_copy(path: Path, template: Path) -> bool:
    image = _image(path)
    try:
        _copy_sparse(template, image)
        mount_image(image, path, "ext4", MS_NOSUID | MS_NODEV)
    except (OSError, RunyardError):
        image.unlink(missing_ok=True)
        return False
    return True


def _template(templates: Path, size: int, fresh: bool = False) -> Path:
    """The empty file system of `size` bytes, made the first time it is asked for (and
    again when `fresh`)."""
    template = templates / f"ext4-{size}.img"
    if template.is_file() and not fresh:
        return template
    templates.mkdir(parents=True, exist_ok=True)
    made = templates / f"{template.name}.{Owner.current().folder_name}.{threading.get_ident()}"
    with made.open("wb") as handle:
        handle.truncate(size)
    done = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", str(made)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        made.unlink(missing_ok=True)
        raise OSError(f"mkfs.ext4 failed: {done.stderr.decode(errors='replace').strip()}")
    made.replace(template)  # whole or not at all, whoever else makes it at the same time
    return template


def _copy_sparse(source: Path, target: Path) -> None:
    """Copy `source`'s data to a new file `target` of its size, leaving its holes holes."""
    with source.open("rb") as src, target.open("xb") as dst:
        end = os.fstat(src.fileno()).st_size
        dst.truncate(end)
        at = 0
        while at < end:
            try:
                data = os.lseek(src.fileno(), at, os.SEEK_DATA)
            except OSError as error:  # ENXIO: no data after `at`
                if error.errno == errno.ENXIO:
                    return
                raise
            hole = os.lseek(src.fileno(), data, os.SEEK_HOLE)
            while data < hole:
                done = os.copy_file_range(src.fileno(), dst.fileno(), hole - data, data, data)
                if done == 0:
                    raise OSError(f"{source} ended while it was copied")
                data += done
            at = hole
