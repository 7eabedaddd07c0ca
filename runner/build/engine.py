"""Reach the Docker engine: the one client runyard talks to it with, and starting
`dockerd` when we may and must.

`DockerEngine` makes the few calls runyard needs (ping, images, containers, build,
pull, push, import; a swarm's services, tasks, secrets, configs, networks and nodes)
as plain HTTP/1.1 requests on the engine's socket (runner.build.http1): the Docker
SDK's client would bring requests and urllib3 into every `runyard run` (a tenth of
a second of imports, and a round trip to negotiate the API version) for no more
than this. Each request has a connection of its own, so threads may share one
`DockerEngine` (a unix socket connects in microseconds).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from runner.build.http1 import Body, Response, send
from runner.errors import RunyardError

DOCKERD_LOG = Path("/var/log/runyard-dockerd.log")
DEFAULT_SOCKET = Path("/var/run/docker.sock")
DEFAULT_HOSTS = ("", f"unix://{DEFAULT_SOCKET}", "unix:///run/docker.sock")
API_VERSION = "1.41"  # Docker 20.10; newer engines answer it too
CALL_TIMEOUT = 60.0  # seconds for a call that does not wait on purpose


class EngineError(Exception):
    """The engine answered with an error (`status`), or stopped answering (`status` None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class EngineTimeout(EngineError):
    """A call that outlived its timeout: the engine is there, the wait was too long."""


Unreachable = (EngineError, OSError)  # what a call to an engine that is not there raises
Filters = Mapping[str, str | list[str]]
Json = Any  # what the engine's API answers: objects and lists, as its documentation says


class DockerEngine:
    """A client of the engine at DOCKER_HOST (unix:// or tcp://; the local socket when unset)."""

    def __init__(self, host: str | None = None) -> None:
        self.host = _docker_host() if host is None else host
        plain = self.host == "" or self.host.startswith(("unix://", "tcp://"))
        if not plain or os.environ.get("DOCKER_TLS_VERIFY"):
            raise RunyardError(f"DOCKER_HOST {self.host!r}: runyard reaches an engine on a unix "
                               "socket or plain tcp:// only (no TLS, no ssh://)")

    def close(self) -> None:
        """Nothing is held open between calls."""

    # the calls runyard makes

    def ping(self) -> None:
        self.call("GET", "/_ping", timeout=10.0)

    def images(self, filters: Filters | None = None) -> list[dict[str, Json]]:
        found: list[dict[str, Json]] = self.call("GET", "/images/json", params=_filters(filters))
        return found

    def inspect_image(self, name: str) -> dict[str, Json] | None:
        """What the engine knows of the image `name` (a tag or an id); None when it has none,
        also when this engine cannot read `name` (400: an older one reads no `[::1]:5000/x`)."""
        try:
            found: dict[str, Json] | None = self._found(f"/images/{_quoted(name)}/json")
        except EngineError as error:
            if error.status == 400:
                return None
            raise
        return found

    def remove_image(self, name: str) -> None:
        self.call("DELETE", f"/images/{_quoted(name)}")

    def containers(self, filters: Filters | None = None) -> list[dict[str, Json]]:
        """Every container (running or not) that the filters select."""
        found: list[dict[str, Json]] = self.call(
            "GET", "/containers/json", params={"all": "1", **_filters(filters)})
        return found

    def create_container(self, name: str, config: Mapping[str, Json]) -> str:
        """The id of a new container named `name` (see the engine's ContainerCreate)."""
        created: dict[str, Json] = self.call("POST", "/containers/create", params={"name": name},
                                             body=config)
        return str(created["Id"])

    def start(self, container: str) -> None:
        self.call("POST", f"/containers/{container}/start")

    def inspect_container(self, container: str) -> dict[str, Json] | None:
        found: dict[str, Json] | None = self._found(f"/containers/{container}/json")
        return found

    def kill(self, container: str) -> None:
        self.call("POST", f"/containers/{container}/kill")

    def remove_container(self, container: str) -> None:
        """Remove a container, running or not."""
        self.call("DELETE", f"/containers/{container}", params={"force": "1"})

    @contextlib.contextmanager
    def attach(self, container: str) -> Iterator[Iterator[bytes]]:
        """What the container prints (standard output and error as they come), from the
        attach to its end: attach before the start to have all of it."""
        with self.request("POST", f"/containers/{container}/attach", timeout=None,
                          params={"stream": "1", "stdout": "1", "stderr": "1"}) as response:
            yield _frames(response)

    @contextlib.contextmanager
    def events(self, filters: Filters) -> Iterator[Iterator[dict[str, Json]]]:
        """The engine's events that match `filters`, from the call on, as they come."""
        with self.request("GET", "/events", params=_filters(filters), timeout=None) as response:
            yield _messages(response)

    def logs(self, container: str) -> Iterator[bytes]:
        """What the container prints (standard output and error as they come), until it ends."""
        response = self.request("GET", f"/containers/{container}/logs",
                                params={"stdout": "1", "stderr": "1", "follow": "1"}, timeout=None)
        return _frames(response)

    def build(self, context: bytes, params: Mapping[str, str],
              registries: str | None = None) -> Iterator[dict[str, Json]]:
        """Build an image from a tar `context` (`registries`: the X-Registry-Config the
        base image is pulled with); the engine's progress messages, as they come."""
        headers = {"Content-Type": "application/x-tar",
                   **({"X-Registry-Config": registries} if registries else {})}
        response = self.request("POST", "/build", params=params, body=context, timeout=None,
                                headers=headers)
        return _messages(response)

    def pull(self, repository: str, tag: str, auth: str | None,
             idle: float) -> Iterator[dict[str, Json]]:
        """Pull an image (EngineTimeout after `idle` s without a word from the engine)."""
        response = self.request("POST", "/images/create",
                                params={"fromImage": repository, "tag": tag}, timeout=idle,
                                headers={"X-Registry-Auth": auth} if auth else {})
        return _messages(response)

    def import_image(self, tarball: Path, repository: str, tag: str,
                     changes: tuple[str, ...]) -> Iterator[dict[str, Json]]:
        """Make an image of a root file system packed in `tarball`."""
        params = [("fromSrc", "-"), ("repo", repository), ("tag", tag),
                  *(("changes", change) for change in changes)]
        with tarball.open("rb") as data:
            response = self.request("POST", "/images/create", params=params, body=data,
                                    timeout=None, headers={"Content-Type": "application/x-tar",
                                                           "Content-Length": str(tarball.stat().st_size)})
        return _messages(response)

    def push(self, repository: str, tag: str, auth: str,
             idle: float = CALL_TIMEOUT) -> Iterator[dict[str, Json]]:
        """Push an image to its registry (`auth`: the X-Registry-Auth header, see
        `registry_auth`); the engine's progress messages, the digest among them."""
        response = self.request("POST", f"/images/{_quoted(repository)}/push",
                                params={"tag": tag}, timeout=idle,
                                headers={"X-Registry-Auth": auth})
        return _messages(response)

    # swarm: services, their tasks and logs, secrets, configs, networks, nodes, volumes

    def create_service(self, spec: Mapping[str, Json]) -> str:
        """The id of a new service (see the engine's ServiceSpec)."""
        created: dict[str, Json] = self.call("POST", "/services/create", body=spec)
        return str(created["ID"])

    def services(self, filters: Filters | None = None) -> list[dict[str, Json]]:
        found: list[dict[str, Json]] = self.call("GET", "/services", params=_filters(filters))
        return found

    def inspect_service(self, service: str) -> dict[str, Json] | None:
        found: dict[str, Json] | None = self._found(f"/services/{_quoted(service)}")
        return found

    def remove_service(self, service: str) -> None:
        self.call("DELETE", f"/services/{_quoted(service)}")

    def tasks(self, filters: Filters | None = None) -> list[dict[str, Json]]:
        found: list[dict[str, Json]] = self.call("GET", "/tasks", params=_filters(filters))
        return found

    def service_logs(self, service: str, *, follow: bool,
                     timeout: float | None = CALL_TIMEOUT) -> Iterator[bytes]:
        """What a service's tasks print (standard output and error), as far as it is
        written, or (`follow`) as it comes; a service without a TTY, as runyard's."""
        params = {"stdout": "1", "stderr": "1", **({"follow": "1"} if follow else {})}
        response = self.request("GET", f"/services/{_quoted(service)}/logs", params=params,
                                timeout=timeout)
        return _frames(response)

    def create_secret(self, name: str, data: bytes, labels: Mapping[str, str]) -> str:
        return self._create_stored("secrets", name, data, labels)

    def secrets(self, filters: Filters | None = None) -> list[dict[str, Json]]:
        found: list[dict[str, Json]] = self.call("GET", "/secrets", params=_filters(filters))
        return found

    def remove_secret(self, secret: str) -> None:
        self.call("DELETE", f"/secrets/{_quoted(secret)}")

    def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> str:
        return self._create_stored("configs", name, data, labels)

    def configs(self, filters: Filters | None = None) -> list[dict[str, Json]]:
        found: list[dict[str, Json]] = self.call("GET", "/configs", params=_filters(filters))
        return found

    def remove_config(self, config: str) -> None:
        self.call("DELETE", f"/configs/{_quoted(config)}")

    def networks(self, filters: Filters | None = None) -> list[dict[str, Json]]:
        found: list[dict[str, Json]] = self.call("GET", "/networks", params=_filters(filters))
        return found

    def create_network(self, config: Mapping[str, Json]) -> str:
        """The id of a new network (see the engine's NetworkCreateRequest)."""
        created: dict[str, Json] = self.call("POST", "/networks/create", body=config)
        return str(created["Id"])

    def nodes(self, filters: Filters | None = None) -> list[dict[str, Json]]:
        found: list[dict[str, Json]] = self.call("GET", "/nodes", params=_filters(filters))
        return found

    def inspect_node(self, node: str) -> dict[str, Json] | None:
        found: dict[str, Json] | None = self._found(f"/nodes/{_quoted(node)}")
        return found

    def volumes(self, filters: Filters | None = None) -> list[dict[str, Json]]:
        found: dict[str, Json] = self.call("GET", "/volumes", params=_filters(filters))
        return list(found.get("Volumes") or [])

    def remove_volume(self, volume: str) -> None:
        self.call("DELETE", f"/volumes/{_quoted(volume)}")

    def _create_stored(self, kind: str, name: str, data: bytes,
                       labels: Mapping[str, str]) -> str:
        """The id of a new secret or config (`kind`) holding `data`."""
        created: dict[str, Json] = self.call("POST", f"/{kind}/create", body={
            "Name": name, "Labels": dict(labels), "Data": base64.b64encode(data).decode()})
        return str(created["ID"])

    # HTTP

    def call(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
             body: Json = None, timeout: float | None = CALL_TIMEOUT) -> Json:
        """One request; its answer decoded from JSON (None when it has no body)."""
        with self.request(method, path, params=params, body=body, timeout=timeout,
                          headers={"Content-Type": "application/json"}) as response:
            data = _read(response.read)
        return json.loads(data) if data.strip().startswith((b"{", b"[")) else None

    def request(self, method: str, path: str, *,
                params: Mapping[str, str] | list[tuple[str, str]] | None = None,
                body: Json = None, headers: Mapping[str, str] | None = None,
                timeout: float | None = CALL_TIMEOUT) -> Response:
        """The engine's response to one request, its status checked (EngineError for an
        error); the caller reads and closes it. A `body` that is not bytes or a file is
        sent as JSON."""
        query = f"?{urlencode(params)}" if params else ""
        payload: Body = body if body is None or isinstance(body, bytes) or hasattr(body, "read") \
            else json.dumps(body).encode()
        sock = self._connect(timeout)
        try:
            response: Response = _read(lambda: send(sock, method, f"/v{API_VERSION}{path}{query}",
                                                    self._authority(), headers or {}, payload))
        except BaseException:
            sock.close()
            raise
        if response.status >= 400:
            with response:
                raise EngineError(_message(_read(response.read), response), response.status)
        return response

    def _authority(self) -> str:
        """What the requests' Host header names: the engine's address, or `localhost` for
        a unix socket (as Docker's own clients say it)."""
        return self.host.removeprefix("tcp://").rstrip("/") if self.host.startswith("tcp://") \
            else "localhost"

    def _connect(self, timeout: float | None) -> socket.socket:
        if self.host.startswith("tcp://"):
            return socket.create_connection(_tcp_address(self._authority()), timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.host.removeprefix("unix://") if self.host else str(DEFAULT_SOCKET))
        except BaseException:
            sock.close()
            raise
        return sock

    def _found(self, path: str) -> Json:
        """What GET `path` answers; None for a 404 (no such image or container)."""
        try:
            return self.call("GET", path)
        except EngineError as error:
            if error.status == 404:
                return None
            raise


def _tcp_address(authority: str) -> tuple[str, int]:
    """HOST[:PORT] (an IPv6 host in brackets) as a socket address; Docker's port by default."""
    host, colon, port = authority.rpartition(":")
    if not colon or (host.startswith("[") and not host.endswith("]")):  # no port: [::1], a name
        host, port = authority, "2375"
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise RunyardError(f"DOCKER_HOST tcp://{authority}: {port!r} is not a port") from None


def _read(read: Callable[[], Any]) -> Any:
    """`read()` of a response, its failures said as EngineError (timeout: EngineTimeout)."""
    try:
        return read()
    except TimeoutError as error:
        raise EngineTimeout("the engine did not answer in time") from error
    except ConnectionError as error:  # ProtocolError among them
        raise EngineError(f"the engine stopped answering ({type(error).__name__}: {error})") \
            from error


def _frames(response: Response) -> Iterator[bytes]:
    """The bytes of a multiplexed log stream (standard output and error as they come)."""
    with response:  # frames: 8 bytes of header (the stream, the size), then the bytes
        while header := _read(functools.partial(response.read, 8)):
            if len(header) < 8:
                return
            size = int.from_bytes(header[4:], "big")
            if chunk := _read(functools.partial(response.read, size)):
                yield chunk


def _messages(response: Response) -> Iterator[dict[str, Json]]:
    """The JSON objects of a progress stream (one a line), until it ends."""
    with response:
        while line := _read(response.readline):
            if line.strip():
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    yield message


def _message(data: bytes, response: Response) -> str:
    try:
        return str(json.loads(data)["message"])
    except (ValueError, KeyError, TypeError):
        return f"{response.status} {response.reason}"


def _filters(filters: Filters | None) -> dict[str, str]:
    if not filters:
        return {}
    lists = {name: [value] if isinstance(value, str) else value for name, value in filters.items()}
    return {"filters": json.dumps(lists)}


def _quoted(name: str) -> str:
    return quote(name, safe="/:")


def registry_config() -> str | None:
    """The registry logins of the Docker configuration (`docker login`), as a build's
    X-Registry-Config header; None without any. Logins kept by a credential helper
    are not read here."""
    found = _logins()
    return _header(found) if found else None


def registry_auth(registry: str) -> str:
    """The login for `registry` (HOST:PORT) of the Docker configuration, as a push's
    X-Registry-Auth header: `{}` when there is none (a registry without logins)."""
    return _header(registry_login(registry))


def registry_login(registry: str) -> dict[str, str]:
    """The login for `registry` of the Docker configuration (username, password,
    serveraddress); empty when there is none."""
    return _logins().get(registry, {})


def _logins() -> dict[str, dict[str, str]]:
    """The registry logins of the Docker configuration, by registry."""
    folder = os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker"
    try:
        logins = json.loads((Path(folder) / "config.json").read_text()).get("auths") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    found = {}
    for registry, login in logins.items():
        with contextlib.suppress(KeyError, ValueError, TypeError, AttributeError):
            user, _, password = base64.b64decode(login["auth"]).decode().partition(":")
            found[registry] = {"username": user, "password": password, "serveraddress": registry}
    return found


def _header(value: Json) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


# connecting, and starting the engine


def connect(report: Callable[[str], None], *, start: bool = True,
            wait: float = 30.0) -> DockerEngine:
    """The engine, once it answers, or a `RunyardError` saying what to do."""
    try:
        return _ping()
    except Unreachable as error:
        if not (start and _may_start()):
            raise RunyardError(_advice(error)) from error
    process = _start_dockerd()
    engine = _wait_for_engine(process, wait)
    report(f"started dockerd (log: {DOCKERD_LOG})")
    return engine


def _ping() -> DockerEngine:
    engine = DockerEngine()
    engine.ping()
    return engine


def _docker_host() -> str:
    return os.environ.get("DOCKER_HOST", "")


def _may_start() -> bool:
    return (
        os.geteuid() == 0
        and shutil.which("dockerd") is not None
        # a dockerd started here would not be the engine DOCKER_HOST points at
        and _docker_host() in DEFAULT_HOSTS
    )


def _start_dockerd() -> subprocess.Popen[bytes]:
    with DOCKERD_LOG.open("ab") as log:
        return subprocess.Popen(
            ["dockerd"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_for_engine(process: subprocess.Popen[bytes], wait: float) -> DockerEngine:
    deadline = time.monotonic() + wait
    while True:
        exited = process.poll() is not None
        try:
            return _ping()
        except Unreachable as error:
            if exited or time.monotonic() >= deadline:
                raise RunyardError(_start_failed(process, wait, error)) from error
        time.sleep(0.5)


def _start_failed(process: subprocess.Popen[bytes], wait: float, error: Exception) -> str:
    how = (
        f"exited with status {process.returncode}"
        if process.poll() is not None
        else f"did not answer within {wait:g} s"
    )
    return (
        f"started dockerd, but it {how} ({error}).\n"
        f"Last lines of {DOCKERD_LOG}:\n{_tail(DOCKERD_LOG, 20)}\n"
        "Fix what the log says, or start the engine yourself "
        "(`systemctl start docker`, or `dockerd &`), then run `runyard setup` again."
    )


def _advice(error: Exception) -> str:
    cause = f"cannot reach the Docker engine ({error})."
    host = _docker_host()
    if host not in DEFAULT_HOSTS:
        return (
            f"{cause} DOCKER_HOST is set to {host!r}: check that an engine listens there, "
            "or unset DOCKER_HOST to use the local engine."
        )
    if shutil.which("dockerd") is None and shutil.which("docker") is None:
        return (
            f"{cause} Docker is not installed: install it "
            "(Debian/Ubuntu: `apt-get install -y docker.io`), then run `runyard setup` again."
        )
    if DEFAULT_SOCKET.exists() and not os.access(DEFAULT_SOCKET, os.R_OK | os.W_OK):
        return (
            f"{cause} Permission denied on {DEFAULT_SOCKET}: add your user to the docker group "
            "(`sudo usermod -aG docker $USER`, then log in again), or run as root."
        )
    if os.geteuid() != 0:
        return (
            f"{cause} The engine is not running: start it "
            "(`sudo systemctl start docker`, or `sudo dockerd &`), then run `runyard setup` again."
        )
    return (
        f"{cause} The engine is not running: start it "
        "(`systemctl start docker`, or `dockerd &`), or let `runyard setup` start it."
    )


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(cannot read it: {error})"
    return "\n".join(text.splitlines()[-lines:])
