"""Reach the Docker engine, starting `dockerd` when we may and must."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import docker
import requests
from docker.errors import DockerException

from runner.errors import RunyardError

DOCKERD_LOG = Path("/var/log/runyard-dockerd.log")
DEFAULT_SOCKET = Path("/var/run/docker.sock")
DEFAULT_HOSTS = ("", f"unix://{DEFAULT_SOCKET}", "unix:///run/docker.sock")
_UNREACHABLE = (DockerException, requests.RequestException, OSError)


def connect(
    report: Callable[[str], None], *, start: bool = True, wait: float = 30.0
) -> docker.DockerClient:
    """A client of a Docker engine that answers, or a `RunyardError` saying what to do."""
    try:
        return _ping()
    except _UNREACHABLE as error:
        if not (start and _may_start()):
            raise RunyardError(_advice(error)) from error
    process = _start_dockerd()
    client = _wait_for_engine(process, wait)
    report(f"started dockerd (log: {DOCKERD_LOG})")
    return client


def _ping() -> docker.DockerClient:
    client = docker.from_env()
    try:
        client.ping()
    except BaseException:
        client.close()
        raise
    return client


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


def _wait_for_engine(process: subprocess.Popen[bytes], wait: float) -> docker.DockerClient:
    deadline = time.monotonic() + wait
    while True:
        exited = process.poll() is not None
        try:
            return _ping()
        except _UNREACHABLE as error:
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
