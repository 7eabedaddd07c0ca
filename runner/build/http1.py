"""HTTP/1.1 on a connected socket: as much of it as the engine's API needs.

One request a connection (`Connection: close`); the answer's body framed by its
length, by chunks, or by the end of the connection. The standard library's
http.client would do as well, but it brings email's parser and ssl with it, some
15 ms of every `runyard run`'s start for header parsing the engine never needs.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from types import TracebackType
from typing import BinaryIO

BLOCK = 1 << 16  # what a file body is sent in
MAX_HEAD = 1 << 16  # the most a status line or a header line may take


class ProtocolError(ConnectionError):
    """The peer broke off or did not speak HTTP/1.1: a body cut short, a head unreadable."""


Body = bytes | BinaryIO | None


def send(sock: socket.socket, method: str, target: str, host: str,
         headers: Mapping[str, str], body: Body) -> Response:
    """Send one request on `sock` and read the head of its answer; the caller reads the
    body and closes the response (which closes the socket)."""
    head = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    named = {name.lower() for name in headers}
    if isinstance(body, bytes) or (body is None and method in ("POST", "PUT")):
        head.append(f"Content-Length: {len(body or b'')}")
    elif body is not None and "content-length" not in named:
        raise ValueError("a file body needs its Content-Length")
    sock.sendall("\r\n".join(head).encode("latin-1") + b"\r\n\r\n")
    if isinstance(body, bytes):
        sock.sendall(body)
    elif body is not None:
        for block in iter(lambda: body.read(BLOCK), b""):
            sock.sendall(block)
    return Response(sock, method)


class Response:
    """An answer: its status, its headers (names in lower case) and its body, read as it comes."""

    def __init__(self, sock: socket.socket, method: str) -> None:
        self.sock = sock
        self.stream = sock.makefile("rb")
        try:
            self.status, self.reason, self.headers = self._head()
            self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
            self.left, self.done = self._framing(method)
        except BaseException:
            self.close()
            raise

    def _head(self) -> tuple[int, str, dict[str, str]]:
        status, reason = self._status_line()
        while 100 <= status < 200:  # an interim answer: the real one follows it
            self._headers()
            status, reason = self._status_line()
        return status, reason, self._headers()

    def _framing(self, method: str) -> tuple[int | None, bool]:
        """Bytes of the body (or of its current chunk) still unread, None when not known;
        and whether the body has ended."""
        if method == "HEAD" or self.status in (204, 304):
            return None, True
        if self.chunked or "content-length" not in self.headers:
            return None, False  # told by the chunks, or by the connection's end
        length = self.headers["content-length"]
        if not length.isascii() or not length.isdigit():
            raise ProtocolError(f"a Content-Length that is no number: {length!r}")
        return int(length), int(length) == 0

    def read(self, amount: int | None = None) -> bytes:
        """The next `amount` bytes of the body (all of it: None); fewer only at its end."""
        parts: list[bytes] = []
        wanted = amount
        while not self.done and (wanted is None or wanted > 0):
            part = self._some(wanted)
            parts.append(part)
            if wanted is not None:
                wanted -= len(part)
        return b"".join(parts)

    def readline(self) -> bytes:
        """The body's next line, with its newline; what is left of the body at its end."""
        parts: list[bytes] = []
        while not self.done and not (parts and parts[-1].endswith(b"\n")):
            parts.append(self._some(None, line=True))
        return b"".join(parts)

    def close(self) -> None:
        self.stream.close()
        self.sock.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _some(self, wanted: int | None, *, line: bool = False) -> bytes:
        """Some bytes of the body, at least one unless it has ended; at most `wanted`, and
        no more than a line with `line`."""
        if self.chunked and not self.left:
            self._next_chunk()
            if self.done:
                return b""
        limit = min(x for x in (wanted, self.left, BLOCK) if x is not None)
        part = self.stream.readline(limit) if line else self.stream.read1(limit)
        if not part:
            if self.left is not None:
                raise ProtocolError("the body was cut short")
            self.done = True  # a body that ends with the connection
            return b""
        if self.left is not None:
            self.left -= len(part)
            self.done = self.left == 0 and not self.chunked
        return part

    def _next_chunk(self) -> None:
        if self.left == 0:  # the end of the chunk before: its CRLF
            self._line()
        size = self._line().split(b";", 1)[0].strip()
        if not size or size.strip(b"0123456789abcdefABCDEF"):
            raise ProtocolError(f"a chunk size that is no number: {size!r}")
        self.left = int(size, 16)
        if self.left == 0:
            while self._line().strip():  # trailers, to the blank line
                pass
            self.done = True

    def _status_line(self) -> tuple[int, str]:
        line = self._line()
        version, _, rest = line.decode("latin-1").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.1 answer: {line[:80]!r}")
        return int(code), reason.strip()

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        while line := self._line().strip():
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon:
                raise ProtocolError(f"a header line without a colon: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        return headers

    def _line(self) -> bytes:
        line = self.stream.readline(MAX_HEAD)
        if not line.endswith(b"\n"):
            raise ProtocolError("the answer was cut short" if len(line) < MAX_HEAD
                                else "a line of the answer's head is too long")
        return line

