"""The swarm backend without a shared disk of the runner's (issue 14, "Nothing may rely on
a shared disk"), on the real one-node swarm and registry of tests/test_swarm.py.

With `execution.shared`, a run's inputs and outputs are staged in that folder (every
node mounts it) and its working and temporary folders are the node's own tmpfs, so no
mount of the task comes from the runner's own folders; without it, the run is pinned
to the runner's node.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import commit_all
from tests.test_swarm import (
    REGISTRY,
    killed_runner,
    left_behind,
    project_services,
    run_json,
    runyard,
    swarm_project,
    untag_images,
)
from tests.test_swarm import swarm_ready as swarm_ready

pytestmark = pytest.mark.docker

NAME = f"ryshared-{secrets.token_hex(3)}"
ARTIFACT_LIMIT = 1 << 20
DISK_LIMIT = 8 << 20


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every node mounts: on a one-node swarm, a folder of this machine."""
    return tmp_path_factory.mktemp("shared")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, swarm_ready: None,
         shared: Path) -> Iterator[Path]:
    """The swarm test project with `execution.shared`, a 1 MiB limit per artifact and an
    8 MiB scratch disk."""
    path = swarm_project(tmp_path_factory.mktemp("swarm-shared") / "project", NAME)
    with_shared(path, shared)
    with (path / "project.yaml").open("a") as handle:
        handle.write(f"limits: {{artifact: {ARTIFACT_LIMIT}, disk: {DISK_LIMIT}}}\n")
    commit_all(path, "staged in a shared folder")
    yield path
    untag_images(path)


def with_shared(repo: Path, shared: Path | str) -> None:
    text = (repo / "project.yaml").read_text()
    (repo / "project.yaml").write_text(
        text.replace(f"registry: '{REGISTRY}'}}", f"registry: '{REGISTRY}', shared: {shared}}}"))


def run_inspected(repo: Path, *args: str, name: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Run `args` in the background; its service's spec while its task runs, its record's
    status, and what it printed."""
    uid = secrets.token_hex(8)
    runner = subprocess.Popen([sys.executable, "-m", "runner", "run", *args, "--uid", uid],
                              cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.monotonic() + 120
        while not (services := project_services(name)):
            assert runner.poll() is None, runner.communicate()
            assert time.monotonic() < deadline, "no service was made"
            time.sleep(0.1)
        inspected = subprocess.run(["docker", "service", "inspect", services[0]],
                                   capture_output=True, text=True, check=True).stdout
        out, err = runner.communicate(timeout=120)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 0, f"{out}\n{err}"
    return json.loads(inspected)[0]["Spec"]["TaskTemplate"], status_of(repo, uid), out + err


def test_staged_in_the_shared_folder_matches_docker(repo: Path, shared: Path) -> None:
    """Inputs staged read-only and outputs taken back through the shared folder, work and
    tmp the node's tmpfs: no bind mount from outside the shared folder, no pin to a node;
    the results are the Docker backend's, and the attempt's folder goes after the run."""
    lost = shared / "runs" / f"{socket.gethostname()}-{2**22 + 1}-1"  # no such pid
    (lost / "uid-1" / "scratch" / "outputs").mkdir(parents=True)
    (lost / "uid-1" / "scratch" / "outputs" / "results.json").write_text("{}")
    args = ("staged", "-i", "table=data/table.csv", "-p", "seconds=2", "-p", f"fill={2 * DISK_LIMIT}")
    template, on_swarm, printed = run_inspected(repo, *args, name=NAME)
    on_docker = run_json(repo, *args, "--backend", "docker")["status"]
    assert on_swarm["state"] == "completed", on_swarm
    assert on_swarm["results"] == on_docker["results"]
    assert set(on_swarm["results"]) == {"table", "tmp_in_tmpdir", "filled"}
    assert on_swarm["results"]["tmp_in_tmpdir"] is True
    assert on_swarm["results"]["filled"] is False  # the working folder stops at the disk limit
    assert [(a["key"], a["hash"]) for a in on_swarm["artifacts"]] == \
        [(a["key"], a["hash"]) for a in on_docker["artifacts"]]
    mounts = {mount["Target"]: mount for mount in template["ContainerSpec"]["Mounts"]}
    binds = [mount for mount in mounts.values() if mount["Type"] == "bind"]
    assert sorted(mounts) == ["/runyard/inputs", "/runyard/outputs", "/runyard/work", "/tmp"]
    assert all(Path(mount["Source"]).is_relative_to(shared / "runs") for mount in binds), binds
    assert mounts["/runyard/inputs"].get("ReadOnly") is True
    assert not mounts["/runyard/outputs"].get("ReadOnly")
    for target in ("/runyard/work", "/tmp"):
        assert in_memory(mounts[target]) == f"size={DISK_LIMIT}"
    assert not any(c.startswith("node.id") for c in
                   template.get("Placement", {}).get("Constraints", [])), template["Placement"]
    assert "pinned" not in printed
    assert f"removed the scratch of lost runner {socket.gethostname()}/{2**22 + 1}:1" in printed
    assert list((shared / "runs").iterdir()) == []  # the lost runner's and this one's: gone
    assert left_behind(NAME) == [] and volumes(NAME) == []


def test_a_killed_runners_staged_folder_goes_with_the_next_run_on_any_backend(
        repo: Path, shared: Path) -> None:
    pid = killed_runner(repo, lambda: project_services(NAME), "no service was made")
    staged = shared / "runs" / f"{socket.gethostname()}-{pid}-"
    assert [p for p in (shared / "runs").iterdir() if p.name.startswith(staged.name)]
    done = runyard("run", "calc", "-p", "x=3", "--backend", "docker", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (shared / "runs").iterdir() if p.name.startswith(staged.name)] == []
    assert left_behind(NAME) == []


def test_hostile_outputs_through_the_shared_folder_are_refused(repo: Path,
                                                               shared: Path) -> None:
    """A link to a file of the runner's host and an artifact over the limit, left in the
    outputs in the shared folder: refused as on the Docker backend."""
    marker = shared.parent / f"marker-{secrets.token_hex(4)}"
    marker.write_text("the runner's own file\n")
    record = run_json(repo, "leave-grid", "-p", f"marker={marker}", expect=1)  # all failed
    trials = {t["params"]["case"]: t for t in record["status"]["trials"]}
    assert {case: t["state"] for case, t in trials.items()} == {"symlink": "failed",
                                                              "oversize": "failed"}
    for case, why in (("symlink", "not a regular file"),
                      ("oversize", f"over the limit of {ARTIFACT_LIMIT} bytes")):
        child = status_of(repo, trials[case]["uid"])
        assert (child["state"], child["reason"]) == ("failed", "outputs"), child
        assert why in child["error"], child
        assert child["artifacts"] == [], child
    assert list((shared / "runs").iterdir()) == []
    assert left_behind(NAME) == []


def status_of(repo: Path, uid: str) -> dict[str, Any]:
    done = runyard("runs", "show", uid, "--json", cwd=repo)
    assert done.returncode == 0, done.stderr
    status: dict[str, Any] = json.loads(done.stdout)["status"]
    return status


def test_without_a_shared_folder_runs_are_pinned_to_this_node(tmp_path: Path,
                                                              swarm_ready: None) -> None:
    """The run's folders are on this node's disk: the service may run nowhere else. (And a
    lost runner's scratch volume is removed.)"""
    name = f"rypinned-{secrets.token_hex(3)}"
    repo = swarm_project(tmp_path / "project", name)
    node = subprocess.run(["docker", "info", "--format", "{{.Swarm.NodeID}}"],
                          capture_output=True, text=True, check=True).stdout.strip()
    lost = f"{socket.gethostname()}/{2**22 + 1}:1"  # no such pid: its runner is gone
    subprocess.run(["docker", "volume", "create", "--label", f"dev.runyard.runner={lost}",
                    "--label", f"dev.runyard.project={name}", f"{name}-lost-work"],
                   capture_output=True, check=True)
    try:
        template, status, printed = run_inspected(repo, "napper", "-p", "seconds=1", name=name)
    finally:
        untag_images(repo)
    assert status["state"] == "completed"
    assert template["Placement"]["Constraints"] == [f"node.id=={node}"]
    assert f"swarm: runs are pinned to this node (node.id=={node})" in printed
    assert f"removed volume {name}-lost-work of lost runner {lost}" in printed
    mounts = {mount["Target"]: mount for mount in template["ContainerSpec"]["Mounts"]}
    assert {target: mount["Type"] for target, mount in mounts.items()} == {
        "/runyard/inputs": "bind", "/runyard/outputs": "bind", "/runyard/work": "volume",
        "/tmp": "volume"}
    assert in_memory(mounts["/tmp"]) == f"size={2 << 30}"
    assert left_behind(name) == [] and volumes(name) == []


def in_memory(mount: dict[str, Any]) -> str | None:
    """The size option of a tmpfs volume, or None when `mount` is not one."""
    driver = mount.get("VolumeOptions", {}).get("DriverConfig", {})
    options = driver.get("Options", {})
    if mount["Type"] != "volume" or driver.get("Name") != "local" or options.get("type") != "tmpfs":
        return None
    return next((o for o in options["o"].split(",") if o.startswith("size=")), None)


def volumes(name: str) -> list[str]:
    """The volumes runs of project `name` left on this node."""
    done = subprocess.run(["docker", "volume", "ls", "-q", "--filter",
                           f"label=dev.runyard.project={name}"],
                          capture_output=True, text=True, check=True)
    return done.stdout.split()


# --- validate and the operator's word ------------------------------------------------------


def validate(repo: Path) -> subprocess.CompletedProcess[str]:
    return runyard("validate", repo, cwd=repo.parent)


def test_validate_says_to_set_shared_and_warns_of_a_local_store(tmp_path: Path) -> None:
    repo = swarm_project(tmp_path / "project", f"ryshared-{secrets.token_hex(3)}")
    done = validate(repo)
    assert done.returncode == 0, done.stderr
    assert "every run is pinned to the runner's node: set execution.shared to a folder every " \
        "node mounts" in done.stderr
    assert "is a folder of the runner's machine, but the swarm backend runs tasks on any " \
        "node" in done.stderr
    with_shared(repo, tmp_path)
    done = validate(repo)
    assert done.returncode == 0, done.stderr
    assert "execution.shared" not in done.stderr.replace("(--shared)", "")
    assert "is a folder of the runner's machine" in done.stderr
    # a push may not name the folder the runner writes in: the operator does
    assert f"runs started by a push use only the one the runner's operator names (--shared); " \
        f"the project names {tmp_path}, the operator none" in done.stderr


@pytest.mark.parametrize("bad", ["relative/folder", "/mnt/../etc", "/mnt/./x", "/", "'/a b'"])
def test_shared_must_be_an_absolute_plain_path(tmp_path: Path, bad: str) -> None:
    repo = swarm_project(tmp_path / "project", f"ryshared-{secrets.token_hex(3)}")
    with_shared(repo, bad)
    done = validate(repo)
    assert done.returncode == 1, done.stderr
    assert "project.yaml:" in done.stderr
    assert "is not a folder every node can mount at the same path" in done.stderr
    assert "Traceback" not in done.stderr


def test_shared_folder_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    repo = swarm_project(tmp_path / "project", f"ryshared-{secrets.token_hex(3)}")
    with_shared(repo, tmp_path / "not-mounted")
    commit_all(repo, "a shared folder not mounted here")
    done = runyard("run", "calc", cwd=repo)
    assert done.returncode == 1
    assert f"execution.shared: {tmp_path / 'not-mounted'} is not a folder here" in done.stderr
    assert "Traceback" not in done.stderr


def test_operator_names_the_shared_folder_for_pushes(tmp_path: Path) -> None:
    """hook install --shared writes it to the git config; a path it is not refuses."""
    from runner.project.policy import read_policy
    from tests.helpers.gitops import ok
    from tests.helpers.gitops import runyard as hook_runyard

    bare = tmp_path / "bare.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(bare)], check=True)
    installed = ok(hook_runyard("hook", "install", bare, "--shared", "/mnt/runyard"))
    assert "swarm shared folder: /mnt/runyard" in installed
    policy = read_policy(bare)
    assert policy.shared_refusal("/mnt/runyard/") is None
    assert "the operator /mnt/runyard" in (policy.shared_refusal("/srv/other") or "")
    refused = hook_runyard("hook", "install", bare, "--shared", "mnt")
    assert refused.returncode == 1
    assert "'mnt' is not a folder every node can mount" in refused.stderr
