"""Inputs of a run: files of the revision, stored artifacts, host files and URLs.

Every input ends in the artifact store, addressed by its content hash, so a run
reads exactly the bytes its record names (and a rerun can read them again). What
reaches beyond the snapshot and the store (host files, private addresses) is the
operator's to allow (runner.project.policy), and nothing is followed that could lead
elsewhere: no link in the snapshot, no proxy, no redirect to another scheme.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from runner.errors import RunyardError
from runner.project.policy import Policy
from runner.record.artifacts import ArtifactStore, Stored
from runner.record.results import ResultsBranch
from runner.run.safefs import Refused, open_beneath

if TYPE_CHECKING:
    import urllib.request

ARTIFACT_SCHEME = "artifact://"
STORE_SCHEME = "store://"
FETCH_SECONDS = 600.0


class Input(NamedTuple):
    name: str
    uri: str
    hash: str
    size: int
    filename: str  # what the run sees it as


def resolve_input(name: str, uri: str, code: Path, store: ArtifactStore,
                  results: ResultsBranch | None, policy: Policy) -> Input:
    """Put input `name` in the store (if it is not there yet) and say which it is."""
    filename = input_filename(uri)
    try:
        if uri.startswith(ARTIFACT_SCHEME):
            stored = _stored(store, _artifact_hash(uri, results), uri)
        elif uri.startswith(STORE_SCHEME):
            # store://DIGEST, or store://DIGEST/NAME: seen as NAME (as a rerun keeps it)
            stored = _stored(store, uri.removeprefix(STORE_SCHEME).split("/", 1)[0], uri)
        elif uri.startswith("file://"):
            stored = _host_file(uri, store, policy)
        elif uri.startswith(("http://", "https://")):
            stored = _fetch(uri, store, policy)
        elif "://" in uri:
            raise RunyardError(f"{uri!r} uses a scheme runyard cannot fetch")
        else:
            with os.fdopen(open_beneath(code, _inside_snapshot(code, uri)), "rb") as handle:
                stored = store.put_stream(handle)
    except (Refused, FileNotFoundError, NotADirectoryError) as error:
        raise RunyardError(f"input {name}: {uri!r} is not a file of the project "
                           f"({_reason(error)})") from error
    except OverflowError as error:
        raise RunyardError(f"input {name}: {uri!r} is over the limit of "
                           f"{policy.limits.artifact} bytes") from error
    except RunyardError as error:
        raise RunyardError(f"input {name}: {error.message}") from error
    return Input(name, uri, stored.hash, stored.size, filename)


def _inside_snapshot(code: Path, path: str) -> str:
    """`path` with the links inside the snapshot followed (as `validate` does); one that
    leads out of it is refused."""
    top = code.resolve()
    real = (code / path).resolve()
    if not real.is_relative_to(top) or real == top:
        raise Refused(f"{path} leads out of the project")
    return str(real.relative_to(top))


def input_filename(uri: str) -> str:
    """What a run sees the input at `uri` as: its last path segment, made safe."""
    last = uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in last).lstrip(".")
    return safe[:100] or "input"


def _reason(error: Exception) -> str:
    return str(error) if isinstance(error, Refused) else "no such file"


def _stored(store: ArtifactStore, digest: str, uri: str) -> Stored:
    path = store.path_of(digest)
    if not path.is_file():
        raise RunyardError(f"{uri!r} is missing from the artifact store")
    return Stored(digest, path.stat().st_size, f"{STORE_SCHEME}{digest}")


def _artifact_hash(uri: str, results: ResultsBranch | None) -> str:
    key, _, uid = uri.removeprefix(ARTIFACT_SCHEME).partition("@")
    if results is None:
        raise RunyardError(f"{uri}: there are no records to find it in")
    if uid:
        record = results.read(results.find(uid))
        found = [a for a in record.status.artifacts if a.key == key]
        if not found:
            raise RunyardError(f"{uri}: run {uid} logged no artifact {key!r}")
        return str(found[0].hash)
    newest = results.newest_artifact(key)
    if newest is None:
        raise RunyardError(f"{uri}: no completed run has logged an artifact {key!r} yet")
    return str(newest.hash)


def _host_file(uri: str, store: ArtifactStore, policy: Policy) -> Stored:
    path = Path(uri.removeprefix("file://"))
    if not path.is_absolute():
        raise RunyardError(f"{uri!r}: a file:// URI needs an absolute path")
    real = path.resolve()
    if not policy.allows_file(real):
        allowed = ", ".join(policy.file_inputs) or "none"
        raise RunyardError(f"{uri!r}: this runner does not read host files there "
                           f"(folders allowed by its operator: {allowed})")
    with os.fdopen(open_beneath(Path(real.anchor), str(real.relative_to(real.anchor))), "rb") as handle:
        return store.put_stream(handle, policy.limits.artifact)


def _fetch(url: str, store: ArtifactStore, policy: Policy) -> Stored:
    deadline = time.monotonic() + FETCH_SECONDS
    try:
        with _opener(policy).open(url, timeout=60) as response:
            return store.put_stream(_Deadline(response, deadline), policy.limits.artifact)
    except (OSError, ValueError) as error:  # urllib's URLError is an OSError
        raise RunyardError(f"{url!r} could not be fetched: {error}") from error


class _Deadline:
    """A response read only until a deadline: a slow server cannot hold the runner."""

    def __init__(self, response: BinaryIO, deadline: float) -> None:
        self.response, self.deadline = response, deadline

    def read(self, size: int = -1) -> bytes:
        if time.monotonic() > self.deadline:
            raise TimeoutError(f"took longer than {FETCH_SECONDS:.0f} s")
        return self.response.read(size)


def _opener(policy: Policy) -> urllib.request.OpenerDirector:
    """HTTP(S) only, no proxy, and every connection (redirects too) to allowed addresses."""
    # Only URL inputs need urllib's HTTP stack (http.client, email's parser, ssl): with this
    # module's imports, it would cost every run's start some 15 ms.
    import urllib.request
    from http.client import HTTPConnection, HTTPSConnection

    connect = _guarded_connect(policy)

    class Http(HTTPConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = connect

    class Https(HTTPSConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection = connect

    class HttpHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(Http, req)

    class HttpsHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> Any:
            return self.do_open(Https, req)

    opener = urllib.request.OpenerDirector()
    for handler in (HttpHandler(), HttpsHandler(), urllib.request.HTTPRedirectHandler(),
                    urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def _guarded_connect(policy: Policy) -> Callable[..., socket.socket]:
    def connect(address: tuple[str, int], timeout: Any = None,
                source_address: Any = None) -> socket.socket:
        host, port = address
        refused = []
        for family, kind, proto, _, peer in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            if not policy.allows_address(str(peer[0])):
                refused.append(str(peer[0]))
                continue
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(timeout if isinstance(timeout, (int, float)) else None)
                sock.connect(peer)
            except OSError:
                sock.close()
                continue
            return sock
        if refused:
            raise ConnectionRefusedError(
                f"{host} is at {', '.join(refused)}: a loopback, link-local or private "
                "address, which this runner does not fetch from (its operator may allow it)")
        raise ConnectionError(f"cannot connect to {host}:{port}")

    return connect
