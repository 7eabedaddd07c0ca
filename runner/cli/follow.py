"""`runyard runs logs --follow`: a run's log as it grows, until the run ends.

It never waits for nothing: a uid that names no run and no detached start is an
error at once, and a run whose runner is gone ends the wait with that news.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import BinaryIO

from runner.errors import RunyardError
from runner.record.owner import Owner
from runner.record.results import ResultsBranch

POLL = 0.3


def live_dir(project_dir: Path) -> Path:
    from runner.project.loader import find_project_root

    try:
        return find_project_root(project_dir) / ".runyard" / "live"
    except RunyardError:
        return project_dir / ".runyard" / "live"


def follow_log(results: ResultsBranch, prefix: str, live: Path, out: BinaryIO) -> None:
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


def _copy_new(path: Path, offset: int, out: BinaryIO) -> int:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
    except FileNotFoundError:
        return 0
    out.write(chunk)
    out.flush()
    return len(chunk)
