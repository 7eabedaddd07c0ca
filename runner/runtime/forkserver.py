"""A fork server for the local backend: `python3 entry.py --serve`.

Started once per session, it has the interpreter and the runtime loaded, and
forks a child per run, so a trial does not pay for starting Python again. It
is single-threaded (a select loop; SIGCHLD arrives through the wakeup fd), so
forking is safe.

Requests, one JSON line each on stdin: {"id", "spec", "cwd", "env", "log"}.
Replies on stdout: {"id", "pid"} when a run started, {"pid", "code"} when it ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

Main = Callable[[list[str]], int]


def serve(main: Main) -> int:
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
        _reap()
        if 0 in readable:
            chunk = os.read(0, 65536)
            if not chunk:
                return 0  # the runner is gone
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                _start(json.loads(line), main)


def _start(request: dict[str, Any], main: Main) -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(_child(request, main))
    _send({"id": request["id"], "pid": pid})


def _child(request: dict[str, Any], main: Main) -> int:
    code = 1
    try:
        os.setsid()  # its own process group: a timeout kills what it started too
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
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


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send({"pid": pid, "code": os.waitstatus_to_exitcode(status)})


def _send(message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(1, data):]
