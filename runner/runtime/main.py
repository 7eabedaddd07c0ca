"""The runtime's flow: read the spec, run, and always leave the outputs behind."""

from __future__ import annotations

import importlib
import io
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

from .context import RunLog
from .invoke import run_python
from .outputs import OutputStore
from .spec import RunError, Spec, load_spec

TYPE_CHECKING = False  # typing is not imported at run time: it costs each run's start
if TYPE_CHECKING:
    from typing import TextIO

# Frames from these folders lead up to user code; tracebacks start after them.
_PLUMBING_DIRS = (
    os.path.dirname(os.path.abspath(__file__)),
    os.path.dirname(os.path.abspath(importlib.__file__ or "")),
)
_USAGE = "usage: python3 entry.py SPEC_PATH"


class Terminated(BaseException):
    """The run was asked to stop (SIGTERM: a timeout, `docker stop`)."""


class Failure:
    def __init__(self, exit_code: int, type_name: str, message: str, report: str) -> None:
        self.exit_code, self.type_name, self.message = exit_code, type_name, message
        self.report = report  # what goes to stderr


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(_USAGE, file=sys.stderr)
        return 2
    sys.stdout = _unbuffered(sys.stdout)
    sys.stderr = _unbuffered(sys.stderr)
    try:
        spec = load_spec(argv[1])
    except RunError as exc:
        print(f"runyard runtime: {exc}", file=sys.stderr)
        return 2
    if spec.deadline is not None:
        return _supervise(lambda: _execute(spec, argv[1]), spec.deadline)
    return _execute(spec, argv[1])


def _execute(spec: Spec, spec_path: str) -> int:
    log = RunLog(spec.uid, sys.stderr)
    store = OutputStore(spec.paths.outputs, log.warning)
    store.prepare()
    os.makedirs(spec.paths.work, exist_ok=True)
    signal.signal(signal.SIGTERM, _terminate)
    failure = _run(spec, spec_path, store, log)
    # A stop request now would only lose the outputs that are about to be written.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    store.adopt_loose_entries()
    store.write()
    if failure is None:
        return 0
    if failure.report:
        print(failure.report, file=sys.stderr, end="" if failure.report.endswith("\n") else "\n")
    store.write_error(failure.type_name, failure.message)
    return failure.exit_code


def _supervise(work: Callable[[], int], deadline: float) -> int:
    """Run `work` in a child, and end its process group at the deadline.

    The runner has its own timeout; this one holds when no runner is left. In a
    container this process is PID 1, which the run cannot signal away, and when
    it exits the kernel ends every process the run left behind.
    """
    leader = os.getpgid(0) == os.getpid()  # as in a container, or under the fork server
    child = os.fork()
    if child == 0:
        code = 1
        try:
            if not leader:  # a group of its own, so that ending it ends no one else
                os.setpgid(0, 0)
            code = work()
        finally:
            os._exit(code)
    group = os.getpid() if leader else child
    signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(child, signal.SIGTERM))
    ends = time.monotonic() + deadline
    ended = _end_of(child)
    try:
        while True:
            done, status = os.waitpid(child, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                return code if code >= 0 else 128 - code
            left = ends - time.monotonic()
            if left < 0:
                print(f"runyard: the run passed its deadline ({deadline:.0f} s) and was killed",
                      file=sys.stderr)
                os.killpg(group, signal.SIGKILL)  # in a container, PID 1 survives this
                return 128 + signal.SIGKILL
            if ended is not None:
                select.select([ended], [], [], left)  # wakes as the child ends, not a poll later
            else:
                time.sleep(min(left, 0.05))
    finally:
        if ended is not None:
            os.close(ended)


def _end_of(pid: int) -> int | None:
    """A descriptor that turns readable when the child `pid` ends (a pidfd); None where the
    kernel (before 5.3) or a seccomp profile offers none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _run(spec: Spec, spec_path: str, store: OutputStore, log: RunLog) -> Failure | None:
    try:
        if spec.command is not None:
            from .command import run_command  # only command functions need subprocess

            run_command(spec, store, log)
        elif spec.notebook:
            from .notebook import run_notebook  # only notebook functions need Jupyter's packages

            run_notebook(spec, spec_path, store, log)
        else:
            run_python(spec, store, log)
    except SystemExit as exc:
        return _exit_failure(exc)
    except RunError as exc:
        return Failure(exc.exit_code, type(exc).__name__, str(exc), f"runyard: error: {exc}")
    except Terminated:
        message = "the run was stopped (SIGTERM)"
        return Failure(128 + signal.SIGTERM, "Terminated", message, f"runyard: {message}")
    except KeyboardInterrupt:
        return Failure(128 + signal.SIGINT, "KeyboardInterrupt", "interrupted", "")
    except BaseException as exc:  # anything the handler raised is the run's failure
        return Failure(1, type(exc).__name__, str(exc), _user_traceback(exc))
    return None


def _exit_failure(exc: SystemExit) -> Failure | None:
    """SystemExit keeps Python's meaning: None or 0 succeed, a number is the exit code."""
    code = exc.code
    if code is None or code == 0:
        return None
    if isinstance(code, int):
        return Failure(code, "SystemExit", f"the handler exited with code {code}", "")
    return Failure(1, "SystemExit", str(code), str(code))


def _user_traceback(exc: BaseException) -> str:
    """The traceback without the runtime's (and importlib's) frames leading to user code."""
    import traceback  # (only for a failure: with linecache and tokenize, some 4 ms)

    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and _is_plumbing(tb.tb_frame):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _is_plumbing(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    if filename.startswith("<frozen importlib"):
        return True
    return os.path.dirname(os.path.abspath(filename)) in _PLUMBING_DIRS


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _unbuffered(stream: TextIO) -> TextIO:
    """`stream` written straight to its file descriptor, as `python -u` would do."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return stream
    stream.flush()
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(
        raw,
        encoding=stream.encoding or "utf-8",
        errors=stream.errors or "backslashreplace",
        write_through=True,
    )
