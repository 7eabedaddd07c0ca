"""`runyard runs logs --follow`: a run's log as it grows, until the run ends.

It never waits for nothing: a uid that names no run and no detached start is an
error at once, and a run whose runner is gone ends the wait with that news.
"""

from __future__ import annotations

import codecs
import time
from pathlib import Path
from typing import BinaryIO, Protocol

from runner.errors import RunyardError
from runner.record.owner import Owner
from runner.record.results import ResultsBranch
from runner.views.terminal import printable

POLL = 0.3


class LogOutput(Protocol):
    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> None: ...


class TerminalLog:
    """A run's log written to a terminal: its colours kept, any other control written
    out (views/terminal.py). Piped or to a file, a log is the bytes the run wrote."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")  # a character may span writes

    def write(self, data: bytes, /) -> None:
        self.out.write(printable(self.decoder.decode(data), colours=True).encode("utf-8"))

    def flush(self) -> None:
        self.out.flush()


def log_output(out: BinaryIO) -> LogOutput:
    return TerminalLog(out) if out.isatty() else out


def live_dir(project_dir: Path) -> Path:
    from runner.project.loader import find_project_root

    try:
        return find_project_root(project_dir) / ".runyard" / "live"
    except RunyardError:
        return project_dir / ".runyard" / "live"


def follow_log(results: ResultsBranch, prefix: str, live: Path, out: LogOutput) -> None:
    uid = _wait_for_record(results, prefix, live)
    offset = 0
    while True:
        record = results.read(uid)
        offset += _copy_new(live / f"{uid}.log", offset, out)
        status = record.status
        if status.state != "running":
            out.write(results.log(uid)[offset:] if offset else results.log(uid))
            out.flush()
            return
        owner = Owner.parse(status.runner or "")
        if owner is not None and owner.is_lost():
            raise RunyardError(f"run {uid}'s runner ({owner}) is gone: the next runyard command "
                               "that runs anything records it aborted")
        time.sleep(POLL)


def _wait_for_record(results: ResultsBranch, prefix: str, live: Path) -> str:
    """The uid of the run, once it is recorded; a detached start is waited for while its
    process lives."""
    while True:
        try:
            return results.find(prefix)
        except RunyardError:
            starts = sorted(live.glob(f"{prefix}*.runner"))
            if len(starts) != 1:
                raise
        owner = Owner.parse(starts[0].read_text())
        if owner is None or owner.is_lost():
            said = starts[0].with_suffix(".detached")
            tail = said.read_text(errors="replace")[-2000:] if said.exists() else ""
            raise RunyardError(f"run {starts[0].stem} ended before it was recorded:\n{tail}".rstrip())
        time.sleep(POLL)


def _copy_new(path: Path, offset: int, out: LogOutput) -> int:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
    except FileNotFoundError:
        return 0
    out.write(chunk)
    out.flush()
    return len(chunk)
