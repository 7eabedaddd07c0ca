"""The swarm backend when the swarm changes under a run, and the images runs leave.

- A node that leaves mid-run: on the one-node swarm scripts/swarm-setup makes, by
  draining it while a run's task runs (made active again at once, in a `finally`: other
  tests share the node); a node that goes down, with a second engine joined as a worker
  (tests/helpers/swarm_worker.py) whose link is cut; and on the engine's own description
  of this node, changed as the engine would say it.
- Run images: pruned here and in the registry; none left by a run no node takes, nor by
  a push a (real, read-only) registry refuses.
- A run placed on the worker by its `placement`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.run.swarm import NodeWatch, node_trouble
from tests.helpers import commit_all
from tests.test_swarm import (
    REGISTRY,
    left_behind,
    project_services,
    record_path,
    run_json,
    runyard,
    show,
    swarm_project,
    untag_images,
)
from tests.test_swarm_shared import with_shared

NAME = f"ryswops-{secrets.token_hex(3)}"

pytestmark = pytest.mark.docker


def node_id() -> str:
    return subprocess.run(["docker", "info", "--format", "{{.Swarm.NodeID}}"],
                          capture_output=True, text=True, check=True).stdout.strip()


def this_node() -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(subprocess.run(
        ["docker", "node", "inspect", "self"], capture_output=True, text=True,
        check=True).stdout)
    return found[0]


def set_availability(availability: str) -> None:
    subprocess.run(["docker", "node", "update", "--availability", availability, node_id()],
                   capture_output=True, check=True)


@contextlib.contextmanager
def drained() -> Iterator[None]:
    """The node drained; active again on leaving, whatever happened."""
    try:
        set_availability("drain")
        yield
    finally:
        set_availability("active")
        assert this_node()["Spec"]["Availability"] == "active"


def running_service(name: str) -> str | None:
    """The service of project `name` whose task runs, if any."""
    for service in project_services(name):
        done = subprocess.run(["docker", "service", "ps", service, "--format",
                               "{{.CurrentState}}"], capture_output=True, text=True, check=False)
        if done.stdout.startswith("Running"):
            return service
    return None


def wait_for(what: str, found: Any, runner: subprocess.Popen[str], limit: float = 120) -> Any:
    deadline = time.monotonic() + limit
    while not (value := found()):
        assert runner.poll() is None, runner.communicate()
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.2)
    return value


def start(repo: Path, target: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "runner", "run", target, *args, "--json"],
                            cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = swarm_project(tmp_path_factory.mktemp("swarmops") / "project", NAME)
    yield path
    untag_images(path)


# --- a node that leaves mid-run ------------------------------------------------------------


def test_a_drained_node_fails_the_run_with_its_reason(repo: Path) -> None:
    runner = start(repo, "napper")  # naps 60 s
    try:
        wait_for("the napper running", lambda: running_service(NAME), runner)
        with drained():
            started = time.monotonic()
            out, err = runner.communicate(timeout=60)
            took = time.monotonic() - started
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 1, err
    assert "Traceback" not in err
    assert took < 20  # the run ended when its node was drained, not when its nap did
    status = json.loads(out)["status"]
    host = this_node()["Description"]["Hostname"]
    assert (status["state"], status["reason"]) == ("failed", "node")
    assert status["error"] == (f"the node {host} the run was on was drained "
                               "(availability: drain): the run was stopped")
    assert status["node"] == host
    uid = json.loads(out)["metadata"]["uid"]
    assert "napping" in show(repo, record_path(uid, "log.txt"))
    assert left_behind(NAME) == []


def test_a_retry_runs_again_after_the_node_came_back(repo: Path) -> None:
    """Retries stay runyard's: the attempt on the drained node is recorded, the next one
    waits for a node, and runs once the node is active again."""
    runner = start(repo, "nap-retry")
    try:
        first = wait_for("the first attempt running", lambda: running_service(NAME), runner)
        with drained():
            wait_for("the first attempt's service removed",
                     lambda: first not in project_services(NAME), runner, limit=30)
        out, err = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 0, err
    record = json.loads(out)
    uid = record["metadata"]["uid"]
    assert (record["status"]["state"], record["metadata"]["attempt"]) == ("completed", 2)
    earlier = yaml.safe_load(show(repo, record_path(uid, "attempt-1.yaml")))["status"]
    assert (earlier["state"], earlier["reason"]) == ("failed", "node")
    assert "was drained" in earlier["error"]
    assert earlier["service"].startswith(first)  # `service ls` shows ids cut short
    assert not record["status"]["service"].startswith(first)
    assert left_behind(NAME) == []


# --- what a node's description says --------------------------------------------------------


def test_node_trouble_reads_the_engines_node() -> None:
    node = this_node()
    host, ident = node["Description"]["Hostname"], node["ID"]
    assert node_trouble(ident, node) is None  # ready and active
    paused = copy.deepcopy(node)
    paused["Spec"]["Availability"] = "pause"  # keeps its tasks
    assert node_trouble(ident, paused) is None
    drain = copy.deepcopy(node)
    drain["Spec"]["Availability"] = "drain"
    assert node_trouble(ident, drain) == (
        f"the node {host} the run was on was drained (availability: drain)", True)
    down = copy.deepcopy(node)
    down["Status"] = {"State": "down", "Message": "heartbeat failure", "Addr": "10.0.0.2"}
    assert node_trouble(ident, down) == (
        f"the node {host} the run was on is down: heartbeat failure", False)
    assert node_trouble(ident, None) == (f"the node {ident} the run was on left the swarm", True)


def test_node_watch_gives_a_down_node_its_grace() -> None:
    node = this_node()
    ident = node["ID"]
    down = copy.deepcopy(node)
    down["Status"] = {"State": "down", "Message": "heartbeat failure"}
    watch = NodeWatch(grace=30, every=1)
    assert watch.due(0)
    assert watch.judge(ident, down, 0) is None  # down: it may come back
    assert not watch.due(0.5)
    assert watch.judge(ident, down, 29) is None
    assert watch.judge(ident, node, 30) is None  # it came back: the grace starts anew
    assert watch.judge(ident, down, 31) is None
    assert watch.judge(ident, down, 60) is None
    assert watch.judge(ident, down, 61) == (
        f"the node {node['Description']['Hostname']} the run was on is down: heartbeat "
        "failure (for 30 s)")
    assert watch.judge(ident, None, 62) == f"the node {ident} the run was on left the swarm"


# --- no run image left behind --------------------------------------------------------------


def registry_tags(repository: str, registry: str = REGISTRY) -> list[str]:
    done = subprocess.run(["curl", "-sS", f"http://{registry}/v2/{repository}/tags/list"],
                          capture_output=True, text=True, check=True)
    return sorted(json.loads(done.stdout).get("tags") or [])


def manifest_status(pinned: str) -> str:
    """The registry's HTTP status for the manifest of REGISTRY/REPOSITORY@DIGEST."""
    registry, _, rest = pinned.partition("/")
    repository, _, digest = rest.partition("@")
    return subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H",
         "Accept: application/vnd.docker.distribution.manifest.v2+json",
         f"http://{registry}/v2/{repository}/manifests/{digest}"],
        capture_output=True, text=True, check=True).stdout


def local_tags(repository: str) -> list[str]:
    return sorted(subprocess.run(["docker", "images", repository, "--format",
                                  "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True,
                                 check=True).stdout.split())


def test_prune_removes_old_run_images_here_and_in_the_registry(tmp_path: Path) -> None:
    name = f"ryswops-{secrets.token_hex(3)}"
    repo = swarm_project(tmp_path / "project", name)
    repository = f"runyard/{name}"
    try:
        old = run_json(repo, "calc")["status"]["image_digest"]
        (repo / "src" / "handlers.py").write_text(
            (repo / "src" / "handlers.py").read_text() + "# a new revision\n")
        commit_all(repo, "a new revision")
        new = run_json(repo, "calc")["status"]["image_digest"]
        assert old != new
        tags = local_tags(f"{REGISTRY}/{repository}")
        assert len(tags) == 2 and registry_tags(repository) == [t.rpartition(":")[2]
                                                               for t in tags]
        listed = runyard("images", "--json", cwd=repo)
        assert listed.returncode == 0, listed.stderr
        layers = {i["tag"]: i for i in json.loads(listed.stdout) if i["layer"]}
        assert set(layers) == set(tags)
        assert all(i["functions"] for i in layers.values())  # their environment is in use
        (old_tag,) = (t for t in tags if layers[t]["created"] == min(
            i["created"] for i in layers.values()))
        (new_tag,) = set(tags) - {old_tag}

        pruned = runyard("images", "--prune", cwd=repo)
        assert pruned.returncode == 0, pruned.stderr
        assert f"removed {old_tag}\n" in pruned.stdout
        assert f"deleted {old_tag} from the registry\n" in pruned.stdout
        assert f"removed {new_tag}" not in pruned.stdout
        assert f"deleted {new_tag}" not in pruned.stdout
        assert local_tags(f"{REGISTRY}/{repository}") == [new_tag]
        assert registry_tags(repository) == [new_tag.rpartition(":")[2]]
        assert (manifest_status(old), manifest_status(new)) == ("404", "200")
        again = runyard("images", "--prune", cwd=repo)
        assert again.returncode == 0, again.stderr
        assert "removed" not in again.stdout and "deleted" not in again.stdout
        assert run_json(repo, "calc")["status"]["image_digest"] == new  # still there
    finally:
        untag_images(repo)


def test_no_run_image_is_left_by_a_run_no_node_takes(tmp_path: Path) -> None:
    name = f"ryswops-{secrets.token_hex(3)}"
    repo = swarm_project(tmp_path / "project", name)
    try:
        record = run_json(repo, "nowhere", expect=1)
        assert (record["status"]["state"], record["status"]["reason"]) == ("failed", "unplaced")
        assert left_behind(name) == []
        assert local_tags(f"{REGISTRY}/runyard/{name}") == []
        assert registry_tags(f"runyard/{name}") == []
    finally:
        untag_images(repo)


@pytest.fixture
def read_only_registry(tmp_path: Path) -> Iterator[str]:
    """A real registry (Debian's docker-registry) in read-only mode: it answers, and
    refuses every push. Stopped (by its pid) at the end."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    config = tmp_path / "registry.yml"
    config.write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "warn"}, "http": {"addr": address},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")},
                    "maintenance": {"readonly": {"enabled": True}}}}))
    server = subprocess.Popen(["docker-registry", "serve", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["curl", "-fsS", "-o", "/dev/null", f"http://{address}/v2/"],
                             capture_output=True, check=False).returncode != 0:
            assert server.poll() is None and time.monotonic() < deadline, "no registry"
            time.sleep(0.1)
        yield address
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_registry_refusing_the_push_leaves_nothing(tmp_path: Path,
                                                     read_only_registry: str) -> None:
    name = f"ryswops-{secrets.token_hex(3)}"
    repo = swarm_project(tmp_path / "project", name, registry=read_only_registry)
    try:
        done = runyard("run", "calc", "--json", cwd=repo)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        status = json.loads(done.stdout)["status"]
        assert status["state"] == "failed"
        assert f"the registry {read_only_registry} refused the image " \
            f"{read_only_registry}/runyard/{name}:" in status["error"]
        assert "HTTP 405" in status["error"]  # the read-only registry's answer
        assert left_behind(name) == []
        assert local_tags(f"{read_only_registry}/runyard/{name}") == []
    finally:
        untag_images(repo)


def test_a_registry_that_does_not_delete_says_how(read_only_registry: str) -> None:
    from runner.build.registry import Registry
    from runner.errors import RunyardError

    registry = Registry(read_only_registry)
    assert registry.tags("runyard/none") == []
    with pytest.raises(RunyardError, match=f"the registry {read_only_registry} does not allow "
                       "deleting images: set `storage: delete: enabled: true`"):
        registry.delete("runyard/none", f"sha256:{'0' * 64}")


# --- a second node ------------------------------------------------------------------------


def test_a_run_placed_on_a_worker_node(tmp_path: Path) -> None:
    """A second engine joins the swarm as a worker (tests/helpers/swarm_worker.py); a
    function whose `placement` only it satisfies runs there, its image pulled from the
    registry, and gives what it gives on the manager."""
    from tests.helpers.swarm_worker import LABEL, accepting, swarm_worker

    name = f"ryswops-{secrets.token_hex(3)}"
    repo = swarm_project(tmp_path / "project", name)
    (repo / "functions" / "remote.yaml").write_text(
        "apiVersion: runyard/v1\nkind: function\nname: remote\ncode: src/handlers.py\n"
        "handler: calc\nenvironment: {base_image: python:3.11-slim}\n"
        f"placement: [node.labels.{LABEL} == true]\n")
    (tmp_path / "shared").mkdir()
    with_shared(repo, tmp_path / "shared")  # else a run is pinned to the runner's node
    commit_all(repo, "a function for the worker")
    try:
        with swarm_worker() as worker:
            here = run_json(repo, "calc", "-p", "x=3")
            runner = None
            try:
                with accepting(worker):  # paused again once the task is there: no one else's
                    runner = start(repo, "remote", "-p", "x=3")
                    wait_for("the run's task on the worker",
                             lambda: on_node(name, worker.hostname), runner)
                out, err = runner.communicate(timeout=300)
            finally:
                if runner is not None and runner.poll() is None:
                    runner.kill()
            assert runner.returncode == 0, err
            there = json.loads(out)
            pulled = subprocess.run([*worker.docker, "images", "--format",
                                     "{{.Repository}}"], capture_output=True, text=True,
                                    check=True).stdout.split()
        assert there["status"]["node"] == worker.hostname != here["status"]["node"]
        assert there["status"]["results"] == here["status"]["results"] == {
            "sum": 5, "seed": 7, "product": 6}
        assert f"{REGISTRY}/runyard/{name}" in pulled  # from the registry, not this engine
        assert left_behind(name) == []
        assert worker.hostname not in subprocess.run(
            ["docker", "node", "ls", "--format", "{{.Hostname}}"], capture_output=True,
            text=True, check=True).stdout  # the worker is gone, and its engine
        engine_folder = worker.docker[-1].removeprefix("unix://").rpartition("/")[0]
        assert not Path(engine_folder).exists()
        assert subprocess.run(["pgrep", "-f", engine_folder], capture_output=True,
                              check=False).returncode == 1
    finally:
        untag_images(repo)


def test_a_worker_cut_off_fails_its_run_after_the_grace(tmp_path: Path) -> None:
    """A worker that loses the manager mid-run: the swarm marks it down but keeps saying
    its task runs; the runner gives it 30 s to come back, then fails the run, without
    waiting the manager's minute for the rest of the log from the node that is gone."""
    from tests.helpers.swarm_worker import LABEL, accepting, cut_off, swarm_worker

    name = f"ryswops-{secrets.token_hex(3)}"
    repo = swarm_project(tmp_path / "project", name)
    (repo / "functions" / "remote-nap.yaml").write_text(
        "apiVersion: runyard/v1\nkind: function\nname: remote-nap\n"
        "code: src/swarm_handlers.py\nhandler: nap\n"
        "environment: {base_image: python:3.11-slim}\n"
        f"placement: [node.labels.{LABEL} == true]\n")
    (tmp_path / "shared").mkdir()
    with_shared(repo, tmp_path / "shared")
    commit_all(repo, "a long nap on the worker")
    try:
        with swarm_worker() as worker:
            runner = None
            try:
                with accepting(worker):
                    runner = start(repo, "remote-nap", "-p", "seconds=600")
                    wait_for("the run's task on the worker",
                             lambda: on_node(name, worker.hostname), runner)
                wait_for("the nap running", lambda: running_service(name), runner)
                with cut_off(worker):
                    started = time.monotonic()
                    out, err = runner.communicate(timeout=360)
                    took = time.monotonic() - started
            finally:
                if runner is not None and runner.poll() is None:
                    runner.kill()
        assert runner.returncode == 1, err
        assert "Traceback" not in err
        # the grace, after the swarm's heartbeat failure (some 12 s), and 5 s for the log
        assert 30 <= took < 90, took
        record = json.loads(out)
        status = record["status"]
        assert (status["state"], status["reason"], status["node"]) == (
            "failed", "node", worker.hostname)
        log = runyard("runs", "logs", record["metadata"]["uid"], cwd=repo).stdout
        assert "the rest of the run's output could not be read: its node did not answer" in log
        assert re.fullmatch(rf"the node {worker.hostname} the run was on is "
                            r"(down|disconnected|unknown)(: .+)? \(for 30 s\): the run was "
                            r"stopped", status["error"]), status["error"]
        assert left_behind(name) == []
    finally:
        untag_images(repo)


def on_node(name: str, hostname: str) -> bool:
    """Whether a task of a service of project `name` was placed on the node `hostname`."""
    for service in project_services(name):
        done = subprocess.run(["docker", "service", "ps", service, "--format", "{{.Node}}"],
                              capture_output=True, text=True, check=False)
        if hostname in done.stdout.split():
            return True
    return False


def test_a_task_the_swarm_ended_is_told_apart_by_its_node() -> None:
    """Orphaned (its node unreachable for long) or on a node that left: reason `node`;
    shut down on a node that is fine: the engine's doing, reason `engine`."""
    from runner.build.engine import DockerEngine
    from runner.run.backends import Placed
    from runner.run.swarm import SwarmBackend, TaskState

    backend = SwarmBackend(DockerEngine(), REGISTRY, scratch_size=2**20)
    try:
        here, host = node_id(), this_node()["Description"]["Hostname"]
        placed = Placed(here, "", "")

        def ended(state: str, node: str) -> tuple[str | None, str | None]:
            exit_ = backend._taken(TaskState(state, "task: said so", None, None, node), placed)
            return exit_.reason, exit_.message

        assert ended("orphaned", here) == ("node", f"the node {host} the run was on is "
                                           "unreachable: the swarm orphaned the run's task "
                                           "(task: said so)")
        assert ended("shutdown", "nosuchnode0000000000000000") == (
            "node", "the node nosuchnode0000000000000000 the run was on left the swarm: the "
            "swarm shut down the run's task (task: said so)")
        assert ended("shutdown", here) == ("engine",
                                           "the swarm shut down the run's task: task: said so")
        assert ended("rejected", here) == ("engine",
                                           "the swarm rejected the run's task: task: said so")
    finally:
        backend.close()
