"""runyard's HTTP/1.1 (runner.build.http1) against answers written byte by byte: bodies
framed by length, by chunks and by the connection's end, and every way an answer can be
cut short or garbled. The engine's own answers are test_engine's."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from runner.build.http1 import ProtocolError, Response, send


def _answer(raw: bytes, *, pieces: int = 1) -> tuple[Response, list[bytes]]:
    """A request sent to a peer that answers `raw` (in `pieces` writes) and hangs up;
    the answer, and the request the peer read."""
    ours, theirs = socket.socketpair()
    heard: list[bytes] = []

    def peer() -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += theirs.recv(65536)
        heard.append(request)
        step = max(1, len(raw) // pieces)
        for start in range(0, len(raw), step):
            theirs.sendall(raw[start:start + step])
        theirs.close()

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    response = send(ours, "GET", "/v1.41/x", "localhost", {}, None)
    thread.join()
    return response, heard


@pytest.fixture(params=[1, 7], ids=["whole", "in-pieces"])
def pieces(request: pytest.FixtureRequest) -> Iterator[int]:
    yield request.param


def test_a_body_of_a_given_length(pieces: int) -> None:
    response, heard = _answer(b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n"
                              b"X-Thing:  spaced \r\n\r\nhello and more", pieces=pieces)
    with response:
        assert (response.status, response.reason) == (201, "Created")
        assert response.headers["x-thing"] == "spaced"
        assert response.read() == b"hello"  # not what follows the length
    assert heard[0].startswith(b"GET /v1.41/x HTTP/1.1\r\nHost: localhost\r\nConnection: close")


def test_a_chunked_body_reads_whole_by_amount_and_by_line(pieces: int) -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4;ext=1\r\n{\"a\"\r\n6\r\n: 1}\n{\r\n5\r\n\"b\": \r\n3\r\n2}\n\r\n0\r\nTrailer: x\r\n\r\n")
    response, _ = _answer(chunked, pieces=pieces)
    with response:
        assert response.readline() == b'{"a": 1}\n'  # a line across chunks
        assert response.read(3) == b'{"b'
        assert response.read() == b'": 2}\n'
        assert response.read(8) == b"" and response.readline() == b""


def test_a_body_that_ends_with_the_connection(pieces: int) -> None:
    response, _ = _answer(b"HTTP/1.1 200 OK\r\n\r\nline one\nline two", pieces=pieces)
    with response:
        assert response.readline() == b"line one\n"
        assert response.readline() == b"line two"
        assert response.readline() == b""


def test_an_interim_answer_is_passed_over_and_an_empty_one_has_no_body() -> None:
    response, _ = _answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
    with response:
        assert response.status == 204 and response.read() == b""


def test_a_post_without_a_body_says_so_and_a_body_is_sent_with_its_length() -> None:
    for body, length in ((None, b"Content-Length: 0"), (b"{}", b"Content-Length: 2")):
        ours, theirs = socket.socketpair()
        theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        with send(ours, "POST", "/x", "h", {"Content-Type": "application/json"}, body):
            pass
        request = theirs.recv(65536)
        theirs.close()
        assert length in request and request.endswith(b"\r\n\r\n" + (body or b""))


@pytest.mark.parametrize("raw, said", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "cut short"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nshort", "cut short"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", "chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n", "chunk size"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "colon"),
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.1 answer"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "cut short"),
    (b"", "cut short"),
])
def test_an_answer_cut_short_or_garbled_is_a_protocol_error(raw: bytes, said: str) -> None:
    with pytest.raises(ProtocolError, match=said):
        response, _ = _answer(raw)
        with response:
            response.read()
    assert issubclass(ProtocolError, ConnectionError)  # what the engine's client says as lost


def test_a_head_line_past_the_limit_is_refused() -> None:
    with pytest.raises(ProtocolError, match="too long"):
        _answer(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n")
