"""Mounts made with system calls (root only): a few microseconds each, where a `mount`
or `umount` process would cost milliseconds (its start, and libmount reading the whole
mount table). Used for a run's scratch disk (scratch.py) and for placing a trial's
folders in its worker (workers.py)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import stat
import struct
from pathlib import Path

from runner.errors import RunyardError

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT = 1, 2, 4, 32
MS_BIND, MS_MOVE, MS_SHARED = 4096, 8192, 1 << 20
MNT_DETACH = 2

# <linux/loop.h>
_LOOP_CTL_GET_FREE, _LOOP_CONFIGURE = 0x4C82, 0x4C0A
_LOOP_SET_FD, _LOOP_CLR_FD, _LOOP_SET_STATUS64 = 0x4C00, 0x4C01, 0x4C04  # before Linux 5.8
_LO_FLAGS_AUTOCLEAR = 4
_LOOP_INFO64 = 232  # bytes of struct loop_info64; its lo_flags (u32) at 52
_LOOP_MAJOR = 7
_LOOP_TRIES = 20  # another process may take the free device first


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def mount(source: Path | str | None, target: Path, flags: int, fstype: str | None = None) -> None:
    """mount(2); a RunyardError saying what failed."""
    done = _libc().mount(str(source).encode() if source else None, str(target).encode(),
                         fstype.encode() if fstype else None, flags, None)
    if done != 0:
        error = ctypes.get_errno()
        raise RunyardError(f"mount {source or ''} {target} (flags {flags:#x}): "
                           f"{os.strerror(error)}")


def unmount(path: Path) -> None:
    """Detach the mount at `path` and every mount below it (none there: nothing happens)."""
    _libc().umount2(str(path).encode(), MNT_DETACH)


def mount_image(image: Path, target: Path, fstype: str, flags: int) -> None:
    """Mount the file system in the file `image` at `target` through a loop device that
    the kernel frees when it is unmounted (autoclear), as `mount -o loop` does."""
    with open(image, "r+b", buffering=0) as backing:
        device, loop = _free_loop(backing.fileno())
        try:
            mount(device, target, flags, fstype)
        finally:
            os.close(loop)  # the mount holds the device now; without one it is freed


def _free_loop(backing: int) -> tuple[str, int]:
    """A loop device bound to the file `backing`, with autoclear set: its path and an open
    descriptor of it."""
    control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(_LOOP_TRIES):
            number = fcntl.ioctl(control, _LOOP_CTL_GET_FREE)
            device = f"/dev/loop{number}"
            loop = _open_device(device, number)
            try:
                if _bind_loop(loop, backing):
                    return device, loop
            except BaseException:
                os.close(loop)
                raise
            os.close(loop)  # taken meanwhile by someone else: ask again
    finally:
        os.close(control)
    raise RunyardError(f"no free loop device after {_LOOP_TRIES} tries")


def _open_device(device: str, number: int) -> int:
    try:
        return os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:  # a /dev without devtmpfs: the node is ours to make
        with contextlib.suppress(FileExistsError):
            os.mknod(device, stat.S_IFBLK | 0o600, os.makedev(_LOOP_MAJOR, number))
        return os.open(device, os.O_RDWR | os.O_CLOEXEC)


def _bind_loop(loop: int, backing: int) -> bool:
    """Bind `loop` to `backing` with autoclear; False when another process took it first."""
    info = bytearray(_LOOP_INFO64)
    struct.pack_into("=I", info, 52, _LO_FLAGS_AUTOCLEAR)
    config = struct.pack("=II", backing, 0) + bytes(info) + bytes(64)
    try:
        fcntl.ioctl(loop, _LOOP_CONFIGURE, config)
        return True
    except OSError as error:
        if error.errno == errno.EBUSY:
            return False
        if error.errno not in (errno.EINVAL, errno.ENOTTY):  # a kernel before 5.8 knows it not
            raise
    try:
        fcntl.ioctl(loop, _LOOP_SET_FD, backing)
    except OSError as error:
        if error.errno == errno.EBUSY:
            return False
        raise
    try:
        fcntl.ioctl(loop, _LOOP_SET_STATUS64, bytes(info))
    except BaseException:
        fcntl.ioctl(loop, _LOOP_CLR_FD)
        raise
    return True
