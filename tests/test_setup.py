"""Machine set-up against the real Docker engine: no mocks."""

from __future__ import annotations

import time
from collections.abc import Iterator

import docker
import pytest

from runner.build.base_images import BaseImageOutcome, ensure_base_images
from runner.build.engine import DockerEngine, connect
from runner.errors import RunyardError

PYTHON = "python:3.11-slim"
MISSING = "runyard-test/does-not-exist:1"


@pytest.fixture(scope="module")
def engine() -> DockerEngine:
    return connect(lambda line: None)


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    """The Docker SDK, for the tests' own look at what setup made."""
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="module")
def python_image(engine: DockerEngine) -> BaseImageOutcome:
    """python:3.11-slim, pulled or built the first time this runs on a machine."""
    lines: list[str] = []
    outcomes = ensure_base_images(engine, [PYTHON], lines.append)
    assert len(outcomes) == 1
    assert lines, "progress is reported"
    return outcomes[0]


def run(client: docker.DockerClient, command: str, user: str = "root") -> str:
    output = client.containers.run(
        PYTHON,
        ["sh", "-ec", command],
        user=user,
        environment={"HOME": "/tmp"},
        remove=True,
        stderr=True,
    )
    assert isinstance(output, bytes)
    return output.decode()


def test_connect_without_engine_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/runyard/docker.sock")
    with pytest.raises(RunyardError, match="DOCKER_HOST"):
        connect(lambda line: None)


@pytest.mark.docker
def test_connect_returns_an_engine_that_answers(engine: DockerEngine) -> None:
    engine.ping()
    assert any(PYTHON in (image.get("RepoTags") or ()) for image in engine.images())


@pytest.mark.docker
def test_python_image_is_made_present(
    client: docker.DockerClient, python_image: BaseImageOutcome
) -> None:
    assert python_image.image == PYTHON
    assert python_image.action in ("present", "pulled", "built-stand-in")
    labels = client.images.get(PYTHON).labels or {}
    if python_image.action == "built-stand-in":
        assert labels.get("dev.runyard.stand-in") == "debootstrap"


@pytest.mark.docker
def test_second_call_finds_it_present_quickly(
    engine: DockerEngine, python_image: BaseImageOutcome
) -> None:
    started = time.monotonic()
    outcomes = ensure_base_images(engine, [PYTHON, PYTHON], lambda line: None)
    assert time.monotonic() - started < 2
    assert outcomes == [BaseImageOutcome(PYTHON, "present")]


@pytest.mark.docker
def test_python_has_ssl_and_venv(
    client: docker.DockerClient, python_image: BaseImageOutcome
) -> None:
    out = run(client, "python -c 'import ssl, venv; print(1)'; python --version")
    assert out.splitlines()[0] == "1"
    assert out.splitlines()[1].startswith("Python 3.11")


@pytest.mark.docker
def test_pip_reaches_the_index(client: docker.DockerClient, python_image: BaseImageOutcome) -> None:
    out = run(client, "pip --version && pip download --no-deps six -d /tmp/x && ls /tmp/x")
    assert "pip " in out
    assert "six-" in out


@pytest.mark.docker
def test_pip_installs_as_root(client: docker.DockerClient, python_image: BaseImageOutcome) -> None:
    out = run(client, "pip install -q six && python -c 'import six; print(six.__name__)'")
    assert out.strip().splitlines()[-1] == "six"


@pytest.mark.docker
def test_pip_installs_as_another_user(
    client: docker.DockerClient, python_image: BaseImageOutcome
) -> None:
    command = "pip install -q six && python -c 'import six; print(six.__file__)'"
    out = run(client, command, user="1000:1000")
    assert out.strip().splitlines()[-1].startswith("/tmp/.local/")


@pytest.mark.docker
def test_venv_with_pip_works(client: docker.DockerClient, python_image: BaseImageOutcome) -> None:
    command = (
        "python -m venv /tmp/v && "
        "/tmp/v/bin/pip install -q six && /tmp/v/bin/python -c 'import six'"
    )
    run(client, command)


@pytest.mark.docker
def test_an_image_that_cannot_be_pulled_is_named(engine: DockerEngine) -> None:
    with pytest.raises(RunyardError, match="does-not-exist") as caught:
        ensure_base_images(engine, [MISSING], lambda line: None)
    assert "docker load" in str(caught.value)
