"""A fork server: `python3 entry.py --serve [CONTROL]`.

Started once (per session for the local backend, per worker container for trials:
runner/run/workers.py), it has the interpreter and the runtime loaded, and forks
a child per run, so a trial does not pay for starting Python again. It is
single-threaded (a select loop; SIGCHLD arrives through the wakeup fd), so
forking is safe.

Requests, one JSON line each: {"id", "spec", "cwd", "env", "log"} starts a run,
{"kill": pid} kills a run's process group. Replies: {"id", "pid"} when a run
started, {"pid", "code"} when it ended.

Without CONTROL they come on stdin and go to stdout. With it (a worker
container), they come through the named pipes CONTROL/in and CONTROL/out, the
server says {"ready": true} first and makes itself non-dumpable, so that a
trial (the same user) can neither trace it nor open its descriptors. As the
container's first process it also kills every other process once a run has
ended, empties /dev/shm and removes System V IPC objects: what a trial left
running or shared never meets the next trial.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import sys
import traceback
from collections.abc import Callable

TYPE_CHECKING = False  # typing is not imported at run time: it costs each run's start
if TYPE_CHECKING:
    from typing import Any


Main = Callable[[list[str]], int]
# What a container's runs share that is neither their scratch nor read-only.
SHARED_FOLDERS = ("/dev/shm", "/dev/mqueue")


def serve(main: Main, control: str | None = None) -> int:
    if control is not None:
        _connect(control)
    sole = os.getpid() == 1  # alone in its container: every other process is a run's
    runs: set[int] = set()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    pending = b""
    while True:
        try:
            readable, _, _ = select.select([0, wake_read], [], [])
        except InterruptedError:
            continue
        if wake_read in readable:
            os.read(wake_read, 4096)
        _reap(runs, sole)
        if 0 in readable:
            chunk = os.read(0, 65536)
            if not chunk:
                return 0  # the runner is gone
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                request = json.loads(line)
                if "kill" in request:
                    _kill(request["kill"], runs, sole)
                else:
                    _start(request, main, runs, sole, (wake_read, wake_write))


def _connect(control: str) -> None:
    """Take requests from CONTROL/in and answer on CONTROL/out, in place of stdin and stdout."""
    for path, flags, target in ((f"{control}/in", os.O_RDONLY, 0), (f"{control}/out", os.O_WRONLY, 1)):
        fd = os.open(path, flags)
        os.dup2(fd, target)
        os.close(fd)
    _set_dumpable(False)
    _send({"ready": True})


def _set_dumpable(dumpable: bool) -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, int(dumpable), 0, 0, 0)  # PR_SET_DUMPABLE
    except (ImportError, OSError, AttributeError):  # no ctypes or no libc: less hardened
        pass


def _start(request: dict[str, Any], main: Main, runs: set[int], sole: bool,
           wake: tuple[int, int]) -> None:
    if sole:
        _end_others()
    pid = os.fork()
    if pid == 0:
        for fd in wake:
            os.close(fd)
        os._exit(_child(request, main, sole))
    runs.add(pid)
    _send({"id": request["id"], "pid": pid})


def _kill(pid: Any, runs: set[int], sole: bool) -> None:
    if pid in runs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    if sole:  # also what left the run's process group
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)


def _end_others() -> None:
    """Kill every process of the container but this one, reap them, and empty the
    container's own shared folders (its scratch is the run's, its root read-only)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGKILL)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
    for shared in SHARED_FOLDERS:
        _empty(shared)
    _remove_sysv_ipc()


def _remove_sysv_ipc() -> None:
    """Remove the System V shared memory, semaphores and message queues of the
    container's IPC namespace (they outlive the processes that made them)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        return
    remove_id = 0  # IPC_RMID
    for kind in ("shm", "sem", "msg"):
        control = getattr(libc, f"{kind}ctl")
        try:
            with open(f"/proc/sysvipc/{kind}") as table:
                rows = table.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 1 and fields[1].isdigit():
                ident = int(fields[1])
                if kind == "sem":
                    control(ident, 0, remove_id)
                else:
                    control(ident, remove_id, None)


def _empty(folder: str) -> None:
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _child(request: dict[str, Any], main: Main, sole: bool) -> int:
    code = 1
    try:
        os.setsid()  # its own process group: a timeout kills what it started too
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if sole:
            _set_dumpable(True)  # the run's /proc entries are its own again
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((null, 0), (log, 1), (log, 2)):
            os.dup2(source, target)
        os.close(log)
        os.close(null)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - lives as long as the child
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        code = main(["entry.py", request["spec"]])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # the child must always end in _exit, never return to the loop
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    return code


def _reap(runs: set[int], sole: bool) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in runs:  # not an orphan the container's first process inherited
            runs.discard(pid)
            if sole:
                _end_others()
            _send({"pid": pid, "code": os.waitstatus_to_exitcode(status)})


def _send(message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(1, data):]
