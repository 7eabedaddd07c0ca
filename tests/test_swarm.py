"""The swarm backend, end to end: a real one-node Docker Swarm and a real registry on
127.0.0.1:5000 (scripts/swarm-setup makes both; `.ci/run` calls it), real git, no mocks.

The run tests' project (tests/projects/run) with tests/projects/swarm laid over it is
copied once per session under a unique name; its registry is the local one.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.helpers import CHECKOUT, SAMPLE_PROJECT, commit_all, copy_project, git, make_repo

RUN_PROJECT = CHECKOUT / "tests" / "projects" / "run"
OVERLAY = CHECKOUT / "tests" / "projects" / "swarm"
RUN_SCHEMA = CHECKOUT / "schemas" / "run.schema.json"
REGISTRY = "127.0.0.1:5000"
BRANCH = "runyard/results"
NAME = f"ryswarm-{secrets.token_hex(3)}"

pytestmark = pytest.mark.docker


# --- helpers -------------------------------------------------------------------------------


def runyard(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_json(repo: Path, *args: str, expect: int = 0, env: dict[str, str] | None = None,
             timeout: float = 300) -> dict[str, Any]:
    done = runyard("run", *args, "--json", cwd=repo, env=env, timeout=timeout)
    assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    record: dict[str, Any] = json.loads(done.stdout)
    return record


def docker_json(*args: str) -> Any:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout or "null")


def project_services(name: str = NAME) -> list[str]:
    """The ids of the services runs of project `name` left, by their label."""
    done = subprocess.run(["docker", "service", "ls", "-q", "--filter",
                           f"label=dev.runyard.project={name}"],
                          capture_output=True, text=True, check=True)
    return done.stdout.split()


def task_containers(label: str) -> list[str]:
    """The containers of swarm tasks with `label` (`KEY=VALUE`), running or not."""
    done = subprocess.run(["docker", "ps", "-aq", "--filter", "label=com.docker.swarm.task",
                           "--filter", f"label={label}"], capture_output=True, text=True,
                          check=True)
    return done.stdout.split()


def left_behind(name: str = NAME) -> list[str]:
    """Services, task containers, secrets and configs runs of project `name` left."""
    return [*project_services(name), *task_containers(f"dev.runyard.project={name}"),
            *leftovers("secret", name), *leftovers("config", name)]


def leftovers(kind: str, name: str = NAME) -> list[str]:
    """The secrets, configs or volumes (`kind`) runs of project `name` left."""
    done = subprocess.run(["docker", kind, "ls", "-q", "--filter",
                           f"label=dev.runyard.project={name}"],
                          capture_output=True, text=True, check=True)
    return done.stdout.split()


def show(repo: Path, path: str) -> str:
    return git(repo, "show", f"{BRANCH}:{path}")


def record_path(uid: str, name: str = "run.yaml") -> str:
    return f"runs/{uid[-2:]}/{uid}/{name}"


def swarm_project(dest: Path, name: str = NAME, registry: str = REGISTRY) -> Path:
    """The run tests' project with the swarm overlay, on the swarm backend, committed."""
    copy_project(RUN_PROJECT, dest)
    shutil.copytree(OVERLAY, dest, dirs_exist_ok=True)
    text = (dest / "project.yaml").read_text().replace("name: rytest\n", f"name: {name}\n")
    (dest / "project.yaml").write_text(
        f"{text}execution: {{backend: swarm, registry: '{registry}'}}\n")
    make_repo(dest)
    commit_all(dest, "the swarm test project")
    return dest


def untag_images(repo: Path, *, environments: bool = True) -> None:
    """Untag the run images this session's runs pushed, and with `environments` their
    environment images too (not the sample's: other tests share it); layers stay cached."""
    done = runyard("runs", "list", "--all", "--limit", "1000", "--json", cwd=repo)
    untag_images_of(json.loads(done.stdout) if done.returncode == 0 else [],
                    environments=environments)


def untag_images_of(records: Iterable[dict[str, Any]], *, environments: bool = True) -> None:
    records = list(records)
    tags = {r["spec"]["image"] for r in records if r["spec"].get("image")} if environments \
        else set()
    repositories = {r["status"]["image_digest"].partition("@")[0] for r in records
                    if r["status"].get("image_digest")}
    for repository in repositories:
        found = subprocess.run(["docker", "images", repository, "--format",
                                "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True,
                               check=True).stdout.split()
        tags.update(found)
    subprocess.run(["docker", "image", "rm", *tags], capture_output=True, check=False)


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def swarm_ready() -> None:
    """The engine a swarm manager and the registry answering: else fail, saying how."""
    from runner.build.engine import connect
    from runner.build.registry import registry_problem
    from runner.run.swarm import swarm_problem

    client = connect(lambda line: None)
    try:
        problems = [p for p in (swarm_problem(client), registry_problem(REGISTRY)) if p]
    finally:
        client.close()
    assert not problems, f"{'; '.join(problems)}: run scripts/swarm-setup (as root) first"


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory, swarm_ready: None) -> Iterator[Path]:
    path = swarm_project(tmp_path_factory.mktemp("swarm") / "project")
    yield path
    untag_images(path)


# --- one run -------------------------------------------------------------------------------


def test_run_on_swarm_matches_docker_and_records_where(repo: Path) -> None:
    on_swarm = run_json(repo, "calc", "-p", "x=3")
    on_docker = run_json(repo, "calc", "-p", "x=3", "--backend", "docker")
    status = on_swarm["status"]
    assert status["state"] == "completed"
    assert on_swarm["spec"]["backend"] == "swarm"
    assert status["results"] == on_docker["status"]["results"] == {"sum": 5, "seed": 7,
                                                                   "product": 6}
    assert [(a["key"], a["hash"]) for a in status["artifacts"]] == \
        [(a["key"], a["hash"]) for a in on_docker["status"]["artifacts"]]
    node = docker_json("node", "inspect", "self")[0]
    assert status["node"] == node["Description"]["Hostname"]
    assert status["service"]
    assert status["image_digest"].startswith(f"{REGISTRY}/runyard/{NAME}@sha256:")
    assert "node" not in on_docker["status"]  # an optional field, left out where unset
    recorded = yaml.safe_load(show(repo, record_path(on_swarm["metadata"]["uid"])))
    jsonschema.validate(recorded, json.loads(RUN_SCHEMA.read_text()))
    assert recorded["status"]["image_digest"] == status["image_digest"]
    # the image is in the registry, under the digest the service was pinned to
    repository, digest = status["image_digest"].removeprefix(f"{REGISTRY}/").split("@")
    manifest = subprocess.run(
        ["curl", "-fsS", "-o", "/dev/null", "-w", "%{http_code}", "-H",
         "Accept: application/vnd.docker.distribution.manifest.v2+json",
         f"http://{REGISTRY}/v2/{repository}/manifests/{digest}"],
        capture_output=True, text=True, check=False)
    assert manifest.stdout == "200", manifest
    shown = runyard("runs", "show", on_swarm["metadata"]["uid"], cwd=repo)
    placed = f"node {status['node']}, service {status['service']}, image {status['image_digest']}"
    assert re.search(rf"^  swarm +{re.escape(placed)}$", shown.stdout, re.M), shown.stdout
    site = repo / ".runyard" / "test-site"
    report = runyard("report", "-o", site, cwd=repo)
    assert report.returncode == 0, report.stderr
    page = (site / "run" / f"{on_swarm['metadata']['uid']}.html").read_text()
    assert f"swarm service</th><td>{status['service']}" in page
    assert f"image digest</th><td>{status['image_digest']}" in page
    assert left_behind() == []


def test_rerun_of_a_swarm_run_reproduces_on_the_swarm(repo: Path) -> None:
    first = run_json(repo, "calc", "-p", "x=2")
    done = runyard("rerun", first["metadata"]["uid"], "--json", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert "of lost runner" not in done.stdout + done.stderr  # the first run left nothing
    rerun = json.loads(done.stdout)
    assert (rerun["reproduced"], rerun["differences"]) == (True, []), rerun
    assert rerun["record"]["spec"]["backend"] == "swarm"
    assert rerun["record"]["status"]["service"] != first["status"]["service"]


def test_a_job_overrides_the_project_backend(repo: Path) -> None:
    record = run_json(repo, "on-docker")
    assert record["spec"]["backend"] == "docker"
    assert record["status"]["results"]["sum"] == 6
    assert "service" not in record["status"]
    assert record["status"]["containers"]


def test_swarm_task_is_hardened(repo: Path) -> None:
    """Not root, no capabilities, read-only code, no Docker socket; no-new-privileges is
    what Swarm (API 1.41) cannot set (README: Swarm)."""
    record = run_json(repo, "calc", "--handler", "whoami")
    assert record["status"]["results"] == {
        "uid": 65534, "cap_eff": "0000000000000000", "no_new_privs": "0",
        "code_writable": False, "work_writable": True, "docker_socket": False,
    }


def test_network_none_has_no_way_out(repo: Path) -> None:
    """`network: none` joins an internal overlay network: the host's bridge is out of reach,
    as it is not for a function on the default network."""
    online = run_json(repo, "online")
    offline = run_json(repo, "offline")
    assert online["status"]["results"] == {"reached": True}
    assert offline["status"]["results"]["reached"] is False


# --- how runs end --------------------------------------------------------------------------


def test_failing_trial_among_parallel_services(repo: Path) -> None:
    record = run_json(repo, "picky-grid", expect=0)
    trials = {t["iteration"]: t for t in record["status"]["trials"]}
    assert {i: t["state"] for i, t in trials.items()} == {1: "completed", 2: "failed",
                                                          3: "completed"}
    assert record["status"]["best_iteration"] == 3
    child = yaml.safe_load(show(repo, record_path(trials[2]["uid"])))
    assert child["status"]["reason"] == "error"
    assert "two is refused" in child["status"]["error"]
    assert child["status"]["exit_code"] not in (0, None)
    assert left_behind() == []


def test_idle_workers_give_way_to_a_step_that_waits_for_what_they_hold(repo: Path) -> None:
    """Trials of a two-step pipeline, each step a function that reserves every cpu of the
    node: the idle worker of one step is retired for the worker the next step waits for,
    at once (not after the worker's start timeout), trial after trial."""
    cpus = docker_json("node", "inspect", "self")[0]["Description"]["Resources"]["NanoCPUs"]
    for step in ("first", "second"):
        (repo / "functions" / f"whole-{step}.yaml").write_text(
            f"apiVersion: runyard/v1\nkind: function\nname: whole-{step}\n"
            "code: src/swarm_handlers.py\nhandler: picky\n"
            f"environment: {{base_image: python:3.11-slim, env: {{STEP: {step}}}}}\n"
            f"resources: {{cpu: {cpus / 1e9:g}}}\n")
    (repo / "pipelines").mkdir(exist_ok=True)
    (repo / "pipelines" / "whole.yaml").write_text(
        "apiVersion: runyard/v1\nkind: pipeline\nname: whole\nsteps:\n"
        "  - {name: first, function: whole-first}\n"
        "  - {name: second, function: whole-second, after: [first]}\n")
    (repo / "jobs" / "whole-grid.yaml").write_text(
        "apiVersion: runyard/v1\nkind: job\nname: whole-grid\nrun: {pipeline: whole}\n"
        "hyper: {params: {x: [1, 3]}, parallel: 1}\n")
    commit_all(repo, "a pipeline whose steps each hold the whole node")
    started = time.monotonic()
    record = run_json(repo, "whole-grid")
    assert time.monotonic() - started < 50  # a worker's start timeout is 60 s
    assert record["spec"]["hyper"]["isolation"] == "process"
    assert [t["state"] for t in record["status"]["trials"]] == ["completed"] * 2
    steps = [step for trial in record["status"]["trials"]
             for step in yaml.safe_load(show(repo, record_path(trial["uid"])))["status"]["steps"]]
    services = [yaml.safe_load(show(repo, record_path(step["uid"])))["status"]["service"]
                for step in steps]
    assert len(set(services)) == 4, services  # each step's worker gave way to the next's
    assert left_behind() == []


def test_timeout(repo: Path) -> None:
    started = time.monotonic()
    record = run_json(repo, "sleepy", expect=1)
    assert time.monotonic() - started < 40  # the handler sleeps 60 s; the limit is 2 s
    assert record["status"]["state"] == "failed"
    assert record["status"]["reason"] == "timeout"
    assert "going to sleep" in show(repo, record_path(record["metadata"]["uid"], "log.txt"))
    assert left_behind() == []


def test_out_of_memory(repo: Path) -> None:
    record = run_json(repo, "hog", expect=1)
    assert record["status"]["state"] == "failed"
    assert record["status"]["reason"] == "oom"
    assert record["status"]["exit_code"] == 137
    assert record["status"]["results"] == {}


def test_failure_is_not_oom_nor_timeout(repo: Path) -> None:
    record = run_json(repo, "calc", "--handler", "fail", expect=1)
    status = record["status"]
    assert (status["state"], status["reason"], status["exit_code"]) == ("failed", "error", 1)
    assert "boom on purpose" in status["error"]
    assert "about to fail" in show(repo, record_path(record["metadata"]["uid"], "log.txt"))


def test_retries_keep_every_attempt_each_its_service(repo: Path) -> None:
    record = run_json(repo, "always-fails", expect=1)
    uid = record["metadata"]["uid"]
    assert record["metadata"]["attempt"] == 3
    services = {record["status"]["service"]}
    for attempt in (1, 2):
        earlier = yaml.safe_load(show(repo, record_path(uid, f"attempt-{attempt}.yaml")))
        assert earlier["status"]["state"] == "failed"
        assert "boom on purpose" in show(repo, record_path(uid, f"attempt-{attempt}.log"))
        services.add(earlier["status"]["service"])
    assert len(services) == 3  # one service per attempt: Swarm never restarted a task
    assert left_behind() == []


def test_no_node_satisfies_the_placement(repo: Path) -> None:
    started = time.monotonic()
    record = run_json(repo, "nowhere", expect=1)
    assert time.monotonic() - started < 40
    status = record["status"]
    assert (status["state"], status["reason"]) == ("failed", "unplaced")
    assert "no node of the swarm took the run in 3 s" in status["error"]
    assert "node.labels.runyard-test-nowhere == true" in status["error"]
    assert status.get("node") is None
    assert left_behind() == []


def test_resources_no_node_has_fail_at_once(repo: Path) -> None:
    started = time.monotonic()
    record = run_json(repo, "greedy", expect=1)
    assert time.monotonic() - started < 40  # not the 60 s a placement may wait for nodes
    status = record["status"]
    assert (status["state"], status["reason"]) == ("failed", "unplaced")
    assert "no node of the swarm has 0 cpu, 67108864 bytes of memory and 1 gpus" in \
        status["error"]
    assert left_behind() == []


def test_interruption_removes_the_service_and_records_aborted(repo: Path) -> None:
    runner = subprocess.Popen([sys.executable, "-m", "runner", "run", "napper", "--json"],
                              cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.monotonic() + 120
        while not _running_task(NAME):
            assert runner.poll() is None, runner.communicate()
            assert time.monotonic() < deadline, "the napper never started"
            time.sleep(0.2)
        runner.send_signal(signal.SIGTERM)
        out, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 1, err
    assert "Traceback" not in err
    record = json.loads(out)
    assert record["status"]["state"] == "aborted"
    assert record["status"]["reason"] == "interrupted"
    assert left_behind() == []


def _running_task(name: str) -> bool:
    for service in project_services(name):
        done = subprocess.run(["docker", "service", "ps", service, "--format", "{{.CurrentState}}"],
                              capture_output=True, text=True, check=False)
        if done.stdout.startswith("Running"):
            return True
    return False


def test_services_of_a_lost_runner_are_removed(repo: Path) -> None:
    lost = f"{socket.gethostname()}/{2**22 + 1}:1"  # no such pid: its runner is gone
    labels = ["--label", f"dev.runyard.runner={lost}", "--label", f"dev.runyard.project={NAME}"]
    lost_service = subprocess.run(
        ["docker", "service", "create", "--detach", "--quiet", "--mode", "replicated-job",
         "--restart-condition", "none", "--name", f"{NAME}-lost", *labels, "python:3.11-slim",
         "sleep", "600"], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["docker", "secret", "create", *labels, f"{NAME}-lost", "-"],
                   input=b"left behind", capture_output=True, check=True)
    assert len(project_services()) == 1 and len(leftovers("secret")) == 1
    done = runyard("run", "calc", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert f"removed service {NAME}-lost of lost runner {lost}" in done.stdout
    assert task_containers(f"com.docker.swarm.service.id={lost_service}") == []
    assert left_behind() == []
    assert leftovers("secret") == []


def killed_runner(repo: Path, ready: Callable[[], object], what: str) -> int:
    """`runyard run napper` in a process of its own, killed (no chance to clean up) once
    `ready()` says so; its process id."""
    runner = subprocess.Popen([sys.executable, "-m", "runner", "run", "napper"], cwd=repo,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not ready():
            assert runner.poll() is None, "the runner ended early"
            assert time.monotonic() < deadline, what
            time.sleep(0.1)
    finally:
        runner.kill()
        runner.wait()
    return runner.pid


def test_a_run_on_docker_removes_what_a_killed_swarm_runner_left(repo: Path) -> None:
    # A job may name its own backend: the next command that runs something removes a
    # killed swarm runner's service (its task's container with it), config and scratch
    # volumes, whichever backend it runs on.
    killed_runner(repo, lambda: _running_task(NAME), "the napper never started")
    assert project_services() and leftovers("config") and leftovers("volume")
    done = runyard("run", "calc", "-p", "x=3", "--backend", "docker", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert "of lost runner" in done.stdout, done.stdout
    assert left_behind() == []
    assert leftovers("volume") == []
    runs = json.loads(runyard("runs", "list", "--json", cwd=repo).stdout)
    napper = [r for r in runs if r["spec"]["function"] == "napper"]
    assert napper and napper[0]["status"]["reason"] == "runner lost"


def test_containers_of_removed_services_are_removed(repo: Path) -> None:
    """The engine (20.10) leaves a removed service's container running on its node, and a
    service removed while its task starts can have its container made after the runner
    looked for it: the next runner removes such a container of a runyard service."""
    labels = ["--label", f"dev.runyard.project={NAME}",
              "--container-label", f"dev.runyard.project={NAME}"]
    service = subprocess.run(
        ["docker", "service", "create", "--detach", "--quiet", "--mode", "replicated-job",
         "--restart-condition", "none", "--name", f"{NAME}-orphan", *labels,
         "python:3.11-slim", "sleep", "600"], capture_output=True, text=True,
        check=True).stdout.strip()
    orphan = f"com.docker.swarm.service.id={service}"
    deadline = time.monotonic() + 60
    while not task_containers(orphan):
        assert time.monotonic() < deadline, "the service's container never came"
        time.sleep(0.2)
    subprocess.run(["docker", "service", "rm", service], capture_output=True, check=True)
    assert task_containers(orphan) != []  # the engine left it
    done = runyard("run", "calc", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert "of a removed service" in done.stdout
    assert task_containers(orphan) == []


def test_secret_is_a_swarm_secret_never_in_inspect_nor_records(repo: Path) -> None:
    value = f"s3cr3t-{secrets.token_hex(8)}"
    runner = subprocess.Popen([sys.executable, "-m", "runner", "run", "secret-nap", "--json"],
                              cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "RY_TEST_SECRET": value})
    inspected = []
    try:
        deadline = time.monotonic() + 120
        while not _running_task(NAME):
            assert runner.poll() is None, runner.communicate()
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.2)
        for service in project_services():
            inspected.append(subprocess.run(["docker", "service", "inspect", service],
                                            capture_output=True, text=True, check=True).stdout)
        for secret in leftovers("secret"):
            inspected.append(subprocess.run(["docker", "secret", "inspect", secret],
                                            capture_output=True, text=True, check=True).stdout)
        out, err = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 0, err
    assert len(inspected) == 2  # the service, and its one secret
    assert '"SecretName"' in inspected[0]  # it is mounted as a Swarm secret...
    assert all(value not in text for text in inspected)  # ...whose value no inspect shows
    assert "RY_TEST_SECRET" not in json.loads(inspected[0])[0]["Spec"]["TaskTemplate"][
        "ContainerSpec"].get("Env", [])
    record = json.loads(out)
    assert record["status"]["results"] == {"length": len(value)}
    assert value not in out + err
    found = subprocess.run(["git", "grep", "-F", value, BRANCH], cwd=repo,
                           capture_output=True, text=True, check=False)
    assert found.returncode == 1, found.stdout
    assert leftovers("secret") == []


# --- bad input -----------------------------------------------------------------------------


def test_registry_that_does_not_answer(tmp_path: Path, swarm_ready: None) -> None:
    name = f"ryswarm-{secrets.token_hex(3)}"
    repo = swarm_project(tmp_path / "project", name, registry="127.0.0.1:9")
    done = runyard("run", "calc", "--json", cwd=repo)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    record = json.loads(done.stdout)
    assert record["status"]["state"] == "failed"
    assert "the registry 127.0.0.1:9 refused the image" in record["status"]["error"]
    assert project_services(name) == []
    images = subprocess.run(["docker", "images", "-q", f"127.0.0.1:9/runyard/{name}"],
                            capture_output=True, text=True, check=True).stdout
    assert images.strip() == ""  # the run image it could not push is gone too
    untag_images(repo)
    subprocess.run(["docker", "image", "rm", record["spec"]["image"]], capture_output=True,
                   check=False)


def test_swarm_without_registry_is_refused(tmp_path: Path) -> None:
    repo = swarm_project(tmp_path / "project")
    text = (repo / "project.yaml").read_text()
    (repo / "project.yaml").write_text(text.replace(f", registry: '{REGISTRY}'", ""))
    commit_all(repo, "no registry")
    done = runyard("run", "calc", cwd=repo)
    assert done.returncode == 1
    assert "the swarm backend needs a registry every node pulls from: set " \
        "execution.registry" in done.stderr
    assert "Traceback" not in done.stderr


def test_setup_swarm_checks_engine_and_registry(tmp_path: Path, swarm_ready: None) -> None:
    repo = swarm_project(tmp_path / "project")
    done = runyard("setup", "--swarm", repo, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"swarm: this engine is a manager; registry {REGISTRY} answers" in done.stdout
    text = (repo / "project.yaml").read_text()
    (repo / "project.yaml").write_text(text.replace(REGISTRY, "127.0.0.1:9"))
    done = runyard("setup", "--swarm", repo, cwd=tmp_path)
    assert done.returncode == 1
    assert "the registry 127.0.0.1:9 does not answer" in done.stderr
    assert "Traceback" not in done.stderr


def test_validate_warns_of_a_local_store_on_swarm(tmp_path: Path) -> None:
    repo = swarm_project(tmp_path / "project")
    done = runyard("validate", repo, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "project.yaml" in done.stderr
    assert "is a folder of the runner's machine, but the swarm backend runs tasks on any " \
        "node" in done.stderr
    # a push may not name the registry the runner's engine pushes code to: the operator does
    assert f"runs started by a push use only the one the runner's operator names (--registry); " \
        f"the project names {REGISTRY}, the operator none" in done.stderr


def test_placement_is_validated(tmp_path: Path) -> None:
    repo = swarm_project(tmp_path / "project")
    picky = repo / "functions" / "picky.yaml"
    picky.write_text(picky.read_text().replace("[node.role == manager]", "[gpu please]"))
    done = runyard("validate", repo, cwd=tmp_path)
    assert done.returncode == 1
    assert "functions/picky.yaml:" in done.stderr
    assert "placement" in done.stderr
    assert "Traceback" not in done.stderr


def test_swarm_setup_is_idempotent(swarm_ready: None) -> None:
    """With the swarm and the registry in place, scripts/swarm-setup only checks."""
    done = subprocess.run([str(CHECKOUT / "scripts" / "swarm-setup")], capture_output=True,
                          text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_run_image_context_names_its_tree(tmp_path: Path) -> None:
    """The same files make the same build context (so the same tag), whatever their times;
    a changed file makes another."""
    from runner.run.execute import runtime_dir
    from runner.run.swarm import run_image_context

    code = copy_project(RUN_PROJECT, tmp_path / "code")
    first = run_image_context("runyard/x:abc", runtime_dir(), code)
    os.utime(code / "project.yaml", (1, 1))
    assert run_image_context("runyard/x:abc", runtime_dir(), code) == first
    (code / "src" / "handlers.py").write_text("# changed\n")
    assert run_image_context("runyard/x:abc", runtime_dir(), code) != first
    assert run_image_context("runyard/y:abc", runtime_dir(), code) != first


def test_push_on_swarm_uses_only_the_operators_registry(tmp_path: Path,
                                                        swarm_ready: None) -> None:
    """The project names the registry; a push runs on the swarm only where the operator
    named the same one (hook install --registry), and is refused before that."""
    from tests.helpers.gitops import Remote, ok, ran, run_records
    from tests.helpers.gitops import runyard as hook_runyard

    name = f"ryswarm-{secrets.token_hex(3)}"
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(RUN_PROJECT / "src", work / "src")
    files = {
        "project.yaml": f"apiVersion: runyard/v1\nkind: project\nname: {name}\n"
                        f"execution: {{backend: swarm, registry: '{REGISTRY}'}}\n",
        "functions/calc.yaml": "apiVersion: runyard/v1\nkind: function\nname: calc\n"
                               "code: src/handlers.py\nhandler: calc\n"
                               "environment: {base_image: python:3.11-slim}\n",
        "jobs/sum.yaml": "apiVersion: runyard/v1\nkind: job\nname: sum\n"
                         "run: {function: calc}\nparams: {x: 4}\n",
    }
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    make_repo(work)
    commit_all(work, "a swarm project")
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "--quiet", "--bare", "-b", "main", str(bare))
    ok(hook_runyard("hook", "install", bare))
    git(work, "remote", "add", "origin", str(bare))
    remote = Remote(bare, work)
    refused = remote.push_and_wait("main")
    assert refused["status"] == "refused", refused
    assert any(f"the project names {REGISTRY}, the operator none" in problem
               for problem in refused["problems"]), refused["problems"]
    installed = ok(hook_runyard("hook", "install", bare, "--registry", REGISTRY))
    assert f"swarm registry: {REGISTRY}" in installed
    remote.append("project.yaml", "# the operator named the registry\n", "again")
    try:
        pushed = remote.push_and_wait("main")
        records = list(run_records(bare).values())
    finally:
        untag_images_of(run_records(bare).values())
    assert pushed["status"] == "completed", pushed
    assert ran(pushed) == {"sum": "completed"}
    (record,) = records
    assert record["spec"]["backend"] == "swarm"
    assert record["status"]["results"]["sum"] == 6
    assert record["status"]["image_digest"].startswith(f"{REGISTRY}/runyard/{name}@sha256:")
    assert left_behind(name) == []


# --- the sample project's hyper-parameter pipeline ----------------------------------------


def test_sample_tune_on_swarm_equals_docker(tmp_path: Path, swarm_ready: None) -> None:
    """The sample's `tune` job (a grid of pipelines) gives the same trials on both."""
    repo = copy_project(SAMPLE_PROJECT, tmp_path / "sample")
    with (repo / "project.yaml").open("a") as handle:
        handle.write(f"execution: {{registry: '{REGISTRY}'}}\n")
    make_repo(repo)
    commit_all(repo, "the sample, with a registry")
    try:
        outcomes = {backend: run_json(repo, "tune", "--backend", backend, timeout=900)
                    for backend in ("docker", "swarm")}
    finally:
        untag_images(repo, environments=False)
    docker_run, swarm_run = outcomes["docker"], outcomes["swarm"]
    assert swarm_run["spec"]["backend"] == "swarm"
    assert swarm_run["status"]["state"] == docker_run["status"]["state"] == "completed"
    assert swarm_run["status"]["best_iteration"] == docker_run["status"]["best_iteration"]
    assert swarm_run["status"]["results"] == docker_run["status"]["results"]

    def trials(record: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(t["iteration"], t["state"], json.dumps(t.get("params"), sort_keys=True),
                 json.dumps(t.get("results"), sort_keys=True))
                for t in record["status"]["trials"]]

    assert trials(swarm_run) == trials(docker_run)
    assert len(trials(swarm_run)) == 5
    assert project_services("churn") == []
