"""The runner's end of a fork server (runner/run/forkclient.py) over real pipes: what a
worker container says is hostile, so a reply outside the protocol closes the channel."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from typing import IO

import pytest

from runner.run.forkclient import MAX_REPLY, ForkChannel, ServerGone


class Server:
    """The far end: reads the channel's requests, writes what a test makes it say."""

    def __init__(self) -> None:
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        self.requests: IO[bytes] = os.fdopen(request_read, "rb")
        self.replies: IO[bytes] = os.fdopen(reply_write, "wb")
        self.channel = ForkChannel(os.fdopen(request_write, "wb"), os.fdopen(reply_read, "rb"))

    def say(self, data: bytes) -> None:
        self.replies.write(data)
        self.replies.flush()

    def say_if_read(self, data: bytes) -> None:
        with contextlib.suppress(OSError, ValueError):  # the reader went away
            self.say(data)

    def next_request(self) -> dict[str, object]:
        request: dict[str, object] = json.loads(self.requests.readline())
        return request


@pytest.fixture
def server() -> Iterator[Server]:
    far = Server()
    yield far
    far.channel.close()
    far.requests.close()


def start_in_thread(channel: ForkChannel) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def start() -> None:
        try:
            outcome.append(channel.start({"spec": "/spec.json"}))
        except ServerGone as error:
            outcome.append(error)

    thread = threading.Thread(target=start)
    thread.start()
    return thread, outcome


def test_a_run_starts_and_ends_with_its_code(server: Server) -> None:
    thread, outcome = start_in_thread(server.channel)
    request = server.next_request()
    assert request["spec"] == "/spec.json"
    server.say(json.dumps({"id": request["id"], "pid": 42}).encode() + b"\n")
    thread.join(5)
    assert outcome == [42]
    assert server.channel.wait(42, 0.05) is None  # not ended yet
    server.say(b'{"pid": 42, "code": 3}\n')
    assert server.channel.wait(42, 5) == 3


def test_kill_sends_the_pid(server: Server) -> None:
    server.channel.kill(7)
    assert server.next_request() == {"kill": 7}


@pytest.mark.parametrize("reply", [
    b"not json\n",
    b"[1, 2]\n",
    b'{"pid": "42", "code": 0}\n',
    b'{"something": "else"}\n',
    b"x" * (MAX_REPLY + 10) + b"\n",
], ids=["not-json", "not-an-object", "pid-not-a-number", "unknown", "too-long"])
def test_a_reply_outside_the_protocol_closes_the_channel(server: Server, reply: bytes) -> None:
    thread, outcome = start_in_thread(server.channel)
    server.next_request()
    # (in a thread: a reply longer than a pipe holds waits for a reader that gave up on it)
    threading.Thread(target=server.say_if_read, args=(reply,), daemon=True).start()
    thread.join(5)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ServerGone)
    assert not server.channel.open
    with pytest.raises(ServerGone):
        server.channel.wait(1, 1)


def test_the_server_going_away_ends_every_wait(server: Server) -> None:
    thread, outcome = start_in_thread(server.channel)
    request = server.next_request()
    server.say(json.dumps({"id": request["id"], "pid": 5}).encode() + b"\n")
    thread.join(5)
    assert outcome == [5]
    server.replies.close()
    with pytest.raises(ServerGone):
        server.channel.wait(5, 5)
