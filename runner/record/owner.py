"""Which runner process a run belongs to, so the next runner can tell a lost one.

A process is named by host, pid and the kernel's start time of that pid: a pid
that was reused by another process later does not pass for the runner.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import NamedTuple


class Owner(NamedTuple):
    host: str
    pid: int
    started: int  # clock ticks after boot, from /proc/PID/stat

    @classmethod
    def current(cls) -> Owner:
        return cls.of_process(os.getpid())

    @classmethod
    def of_process(cls, pid: int) -> Owner:
        return cls(socket.gethostname(), pid, _start_ticks(pid) or 0)

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        host, _, rest = text.strip().rpartition("/")
        pid, _, started = rest.partition(":")
        if not host or not pid.isdigit() or not started.isdigit():
            return None
        return cls(host, int(pid), int(started))

    def __str__(self) -> str:
        return f"{self.host}/{self.pid}:{self.started}"

    @property
    def folder_name(self) -> str:
        """A file name that stands for this owner (`from_folder_name` reads it back)."""
        return f"{self.host}-{self.pid}-{self.started}"

    @classmethod
    def from_folder_name(cls, name: str) -> Owner | None:
        host, pid, started = [*name.rsplit("-", 2), "", ""][:3]
        return cls.parse(f"{host}/{pid}:{started}")

    def is_lost(self) -> bool:
        """Known to be gone: on this host, and its process is no longer there."""
        return self.host == socket.gethostname() and _start_ticks(self.pid) != self.started


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: count from its end
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):  # a zombie has ended: only its exit status is left
        return None
    return int(fields[19])

