"""runyard's client of the Docker engine, against the real engine: no mocks.

What the runs rely on: a container's output as it comes (standard output and error
alike), its end and exit code told as it ends, running out of memory told before it, a
call that ends by its timeout apart from an engine that is gone, a missing image or
container that reads as None, and the engine's own error message when it refuses a call.
"""

from __future__ import annotations

import base64
import json
import socket
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from runner.build.engine import (
    DockerEngine,
    EngineError,
    EngineTimeout,
    Unreachable,
    _tcp_address,
    connect,
    registry_auth,
)
from runner.errors import RunyardError
from runner.run.swarm import remove_service

pytestmark = pytest.mark.docker

IMAGE = "python:3.11-slim"


@pytest.fixture(scope="module")
def engine() -> DockerEngine:
    return connect(lambda line: None, start=False)


@pytest.fixture
def container(engine: DockerEngine) -> Iterator[tuple[DockerEngine, str]]:
    """A container to create; removed afterwards whatever happened to it."""
    name = f"runyard-test-engine-{uuid.uuid4().hex[:8]}"
    yield engine, name
    try:
        engine.remove_container(name)
    except EngineError as error:
        assert error.status == 404


def _create(engine: DockerEngine, name: str, script: str) -> str:
    return engine.create_container(name, {
        "Image": IMAGE, "Cmd": ["python3", "-c", script], "User": "65534:65534",
        "HostConfig": {"NetworkMode": "none", "ReadonlyRootfs": True},
        "Labels": {"dev.runyard.test": "engine"}})


def _ending(engine: DockerEngine,
            created: str) -> AbstractContextManager[Iterator[dict[str, Any]]]:
    """The engine's events that a run follows its container's end by."""
    return engine.events({"container": created, "type": "container", "event": ["die", "oom"]})


def test_a_containers_output_and_end_come_as_it_ends(container: tuple[DockerEngine, str]) -> None:
    engine, name = container
    script = ("import sys, time\nprint('out one', flush=True)\n"
              "print('err one', file=sys.stderr, flush=True)\ntime.sleep(0.3)\n"
              "print('out two', flush=True)\nsys.exit(3)\n")
    created = _create(engine, name, script)
    with _ending(engine, created) as events, engine.attach(created) as output:
        engine.start(created)
        printed = b"".join(output)
        ended = next(events)
    lines = printed.decode().splitlines()  # two streams: in order within each, not across
    assert sorted(lines[:2]) == ["err one", "out one"] and lines[2:] == ["out two"]
    assert ended["Action"] == "die" and ended["Actor"]["Attributes"]["exitCode"] == "3"
    # what was printed stays readable after the end (a trial worker's last words)
    assert b"".join(engine.logs(created)).decode().splitlines()[2:] == ["out two"]
    assert engine.containers({"name": name})[0]["Id"] == created


def test_output_streams_while_the_container_runs(container: tuple[DockerEngine, str]) -> None:
    engine, name = container
    created = _create(engine, name, "import time\nprint('early', flush=True)\ntime.sleep(30)\n")
    first: list[bytes] = []
    got = threading.Event()
    with _ending(engine, created) as events, engine.attach(created) as output:

        def read() -> None:
            for chunk in output:
                first.append(chunk)
                got.set()

        engine.start(created)
        threading.Thread(target=read, daemon=True).start()
        assert got.wait(20), "the first line came only at the end"
        assert b"early" in b"".join(first)
        engine.kill(created)
        assert next(events)["Actor"]["Attributes"]["exitCode"] == "137"


def test_running_out_of_memory_is_told_before_the_end(container: tuple[DockerEngine, str]) -> None:
    engine, name = container
    created = engine.create_container(name, {
        "Image": IMAGE, "Cmd": ["python3", "-c", "x = bytearray(256 << 20)"],
        "HostConfig": {"NetworkMode": "none", "Memory": 32 << 20, "MemorySwap": 32 << 20}})
    with _ending(engine, created) as events:
        engine.start(created)
        actions = [next(events)["Action"], next(events)["Action"]]
    assert actions == ["oom", "die"]
    assert (engine.inspect_container(created) or {})["State"]["OOMKilled"] is True


def test_a_call_past_its_timeout_is_a_timeout_not_a_lost_engine(
        container: tuple[DockerEngine, str]) -> None:
    engine, name = container
    created = _create(engine, name, "import time\ntime.sleep(60)\n")
    engine.start(created)
    with pytest.raises(EngineTimeout):
        engine.call("POST", f"/containers/{created}/wait", timeout=0.5)
    engine.kill(created)


def test_missing_things_read_as_none_and_refusals_say_why(engine: DockerEngine) -> None:
    assert engine.inspect_image("runyard-test/no-such-image:1") is None
    assert engine.inspect_container(f"runyard-no-such-{uuid.uuid4().hex}") is None
    with pytest.raises(EngineError) as refused:
        engine.create_container(f"runyard-test-{uuid.uuid4().hex[:8]}",
                                {"Image": "runyard-test/no-such-image:1", "Cmd": ["true"]})
    assert refused.value.status == 404
    assert "no-such-image" in refused.value.message


def test_images_are_listed_with_filters(engine: DockerEngine) -> None:
    found = engine.images({"reference": IMAGE})
    assert IMAGE in [tag for image in found for tag in image.get("RepoTags") or ()]
    assert engine.inspect_image(IMAGE) is not None


def test_a_root_file_system_is_imported_as_an_image(engine: DockerEngine, tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hello").write_text("hello\n")
    tarball = tmp_path / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(root, arcname=".")
    image = f"runyard-test/imported-{uuid.uuid4().hex[:8]}"
    events = list(engine.import_image(tarball, image, "1", ("LABEL dev.runyard.test=imported",
                                                             'CMD ["/bin/true"]')))
    try:
        assert not [event for event in events if event.get("error")], events
        found = engine.inspect_image(f"{image}:1") or {}
        assert found["Config"]["Labels"] == {"dev.runyard.test": "imported"}
        assert found["Config"]["Cmd"] == ["/bin/true"]
    finally:
        engine.remove_image(f"{image}:1")
    assert engine.inspect_image(f"{image}:1") is None


def test_an_engine_that_is_gone_is_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "gone.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    gone = DockerEngine(f"unix://{path}")

    def answer_nothing() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        connection.close()  # the engine dies mid-call

    threading.Thread(target=answer_nothing, daemon=True).start()
    with pytest.raises(EngineError) as lost:
        gone.inspect_container("abc")
    assert not isinstance(lost.value, EngineTimeout) and lost.value.status is None
    listener.close()
    path.unlink()
    with pytest.raises(Unreachable):
        gone.ping()


def test_a_log_stream_cut_short_is_an_engine_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()

    def answer_half() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        frame = b"\x01\x00\x00\x00\x00\x00\x00\x10ab"  # says 16 bytes follow; 2 do
        connection.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           + f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
        connection.close()  # the engine dies mid-frame

    threading.Thread(target=answer_half, daemon=True).start()
    with pytest.raises(EngineError) as cut:
        list(DockerEngine(f"unix://{path}").logs("abc"))
    assert cut.value.status is None
    listener.close()


def test_an_engine_on_tcp_is_asked_with_its_address() -> None:
    """DOCKER_HOST=tcp://HOST:PORT: the requests go there and name it as their Host."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    heard: list[bytes] = []

    def answer_pong() -> None:
        connection, _ = listener.accept()
        heard.append(connection.recv(65536))
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
        connection.close()

    threading.Thread(target=answer_pong, daemon=True).start()
    DockerEngine(f"tcp://127.0.0.1:{port}").ping()
    listener.close()
    assert heard[0].startswith(b"GET /v1.41/_ping HTTP/1.1\r\n")
    assert f"\r\nHost: 127.0.0.1:{port}\r\n".encode() in heard[0]
    with pytest.raises(RunyardError, match="'x' is not a port"):
        DockerEngine("tcp://127.0.0.1:x").ping()


@pytest.mark.parametrize("authority, address", [
    ("127.0.0.1:9", ("127.0.0.1", 9)), ("docker", ("docker", 2375)),
    ("[::1]", ("::1", 2375)), ("[::1]:2376", ("::1", 2376))])
def test_a_tcp_address_defaults_to_dockers_port(authority: str, address: tuple[str, int]) -> None:
    assert _tcp_address(authority) == address


def test_an_engine_runyard_cannot_speak_to_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "ssh://someone@somewhere")
    with pytest.raises(RunyardError, match="ssh://"):
        connect(lambda line: None, start=False)


# --- a swarm's services, tasks, logs, secrets, configs and nodes ---------------------------


@pytest.fixture(scope="module")
def swarm(engine: DockerEngine) -> DockerEngine:
    """The engine, a swarm manager (scripts/swarm-setup makes it one): else fail, saying how."""
    from runner.run.swarm import swarm_problem

    problem = swarm_problem(engine)
    assert problem is None, f"{problem}: run scripts/swarm-setup (as root) first"
    return engine


@pytest.mark.parametrize("kind", ["secret", "config"])
def test_secrets_and_configs_are_made_listed_and_removed(swarm: DockerEngine, kind: str) -> None:
    name = f"runyard-test-{kind}-{uuid.uuid4().hex[:8]}"
    labels = {"dev.runyard.test": name}
    create, listing, remove = (getattr(swarm, f"create_{kind}"), getattr(swarm, f"{kind}s"),
                               getattr(swarm, f"remove_{kind}"))
    made = create(name, b"the value\n", labels)
    try:
        found = listing({"label": f"dev.runyard.test={name}"})
        assert [(f["ID"], f["Spec"]["Name"], f["Spec"]["Labels"]) for f in found] == [
            (made, name, labels)]
        if kind == "config":  # a config's data reads back; a secret's never does
            assert base64.b64decode(found[0]["Spec"]["Data"]) == b"the value\n"
        else:
            assert "Data" not in found[0]["Spec"]
        with pytest.raises(EngineError) as taken:
            create(name, b"again", labels)
        assert taken.value.status == 409 and name in taken.value.message
    finally:
        remove(made)
    assert listing({"label": f"dev.runyard.test={name}"}) == []
    with pytest.raises(EngineError) as gone:
        remove(made)
    assert gone.value.status == 404


def test_a_service_runs_its_job_and_its_log_comes_back(swarm: DockerEngine) -> None:
    name = f"runyard-test-service-{uuid.uuid4().hex[:8]}"
    script = "import sys\nprint('out one', flush=True)\nprint('err one', file=sys.stderr)\n"
    service = swarm.create_service({
        "Name": name, "Labels": {"dev.runyard.test": "engine"},
        "TaskTemplate": {"ContainerSpec": {"Image": IMAGE, "Command": ["python3", "-c", script],
                                           "User": "65534:65534"},
                         "RestartPolicy": {"Condition": "none"}},
        "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}})
    try:
        assert (swarm.inspect_service(service) or {})["Spec"]["Name"] == name
        deadline = time.monotonic() + 60
        while True:
            tasks = swarm.tasks({"service": service})
            state = tasks[0]["Status"]["State"] if tasks else "new"
            if state in ("complete", "failed", "rejected") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert state == "complete", tasks
        assert tasks[0]["ServiceID"] == service
        lines = b"".join(swarm.service_logs(service, follow=False)).decode().splitlines()
        assert sorted(line.strip() for line in lines) == ["err one", "out one"]
    finally:
        remove_service(swarm, service)  # and its exited container, which the engine leaves
    assert swarm.inspect_service(service) is None
    assert swarm.services({"name": name}) == []
    assert swarm.containers({"label": f"com.docker.swarm.service.id={service}"}) == []


def test_nodes_and_networks_are_listed(swarm: DockerEngine) -> None:
    nodes = swarm.nodes()
    assert nodes and all(node["Status"]["State"] in ("ready", "down", "unknown") for node in nodes)
    found = swarm.inspect_node(nodes[0]["ID"]) or {}
    assert found["Description"]["Hostname"] == nodes[0]["Description"]["Hostname"]
    assert swarm.inspect_node("no-such-node") is None
    assert [network["Name"] for network in swarm.networks({"name": "ingress"})] == ["ingress"]


def test_a_push_sends_the_login_for_its_registry_or_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert json.loads(base64.urlsafe_b64decode(registry_auth("127.0.0.1:5000"))) == {}
    login = base64.b64encode(b"someone:pass:word").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"reg.example:443": {
        "auth": login}}}))
    assert json.loads(base64.urlsafe_b64decode(registry_auth("reg.example:443"))) == {
        "username": "someone", "password": "pass:word", "serveraddress": "reg.example:443"}
    assert json.loads(base64.urlsafe_b64decode(registry_auth("127.0.0.1:5000"))) == {}
