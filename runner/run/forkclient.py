"""The runner's end of a fork server (runner/runtime/forkserver.py): start a run, wait for
its end, kill it. The server may be a process of this host (the local backend) or
the first process of a worker container (runner/run/workers.py), whose replies are
as hostile as anything a container says: a reply that is not what the protocol
allows closes the channel, as if the server had gone.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import IO, Any

MAX_REPLY = 1 << 16  # bytes in one reply line; the server's are tiny


class ServerGone(Exception):
    """The fork server ended (or broke the protocol) before it answered."""


class ForkChannel:
    """Requests written to `requests`, replies read from `replies` by a thread of its own."""

    def __init__(self, requests: IO[bytes], replies: IO[bytes]) -> None:
        self.requests = requests
        self.changed = threading.Condition()
        self.pids: dict[int, int] = {}  # request id -> pid
        self.codes: dict[int, int] = {}  # pid -> exit code
        self.next_id = 0
        self.open = True
        threading.Thread(target=self._listen, args=(replies,), daemon=True).start()

    def start(self, request: dict[str, Any]) -> int:
        """Start a run (spec, cwd, env, log); its pid in the server's namespace."""
        with self.changed:
            self.next_id += 1
            ident = self.next_id
            self._send({**request, "id": ident})
            while ident not in self.pids:
                if not self.open:
                    raise ServerGone
                self.changed.wait(1)
            return self.pids.pop(ident)

    def wait(self, pid: int, timeout: float | None) -> int | None:
        """The run's exit code, or None when `timeout` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.changed:
            while pid not in self.codes:
                if not self.open:
                    raise ServerGone
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self.changed.wait(min(left, 1) if left is not None else 1)
            return self.codes.pop(pid)

    def kill(self, pid: int) -> None:
        """Kill the run's process group (and, in a worker, every process but the server)."""
        with self.changed, contextlib.suppress(ServerGone):
            self._send({"kill": pid})

    def close(self) -> None:
        """End the requests: the server ends when its input does."""
        with contextlib.suppress(OSError):
            self.requests.close()

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self.requests.write(json.dumps(message).encode() + b"\n")
            self.requests.flush()
        except (OSError, ValueError) as error:  # the pipe broke, or was closed
            self.open = False
            raise ServerGone from error

    def _listen(self, replies: IO[bytes]) -> None:
        try:
            while True:
                line = replies.readline(MAX_REPLY)
                if not line.endswith(b"\n"):
                    return  # the end of the stream, or a line longer than any reply
                if not self._take(line):
                    return
        except OSError:
            return
        finally:
            with self.changed:
                self.open = False
                self.changed.notify_all()

    def _take(self, line: bytes) -> bool:
        """Note one reply; False when it is not one the protocol has."""
        try:
            message = json.loads(line)
        except ValueError:
            return False
        if not isinstance(message, dict):
            return False
        pid, code, ident = message.get("pid"), message.get("code"), message.get("id")
        with self.changed:
            if isinstance(pid, int) and isinstance(code, int):
                self.codes[pid] = code
            elif isinstance(pid, int) and isinstance(ident, int):
                self.pids[ident] = pid
            elif message != {"ready": True}:
                return False
            self.changed.notify_all()
        return True


def follow_file(handle: IO[bytes], on_output: Callable[[bytes], None],
                ended: threading.Event) -> None:
    """Pass on what a run writes to its output file, until it has ended."""
    with handle:
        while True:
            finished = ended.is_set()
            chunk = handle.read(1 << 16)
            if chunk:
                on_output(chunk)
            elif finished:
                return
            else:
                ended.wait(0.05)
