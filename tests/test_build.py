"""`runyard build`, `runyard images` and `runyard setup` against the real Docker engine.

No mocks: every test runs the CLI as a subprocess on a small project of its own,
whose name is unique to the test run, so its image tags never collide with
anything else on the engine; a finalizer removes the images each test made.
The environments are tiny (an env variable, or one small pure-Python package),
so that the whole module takes well under a minute or two.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import APIError, ImageNotFound

from runner.build.builder import LocalImages, image_needs, needs_and_images, render_dockerfile
from runner.build.engine import DockerEngine
from runner.errors import RunyardError
from runner.project.environment import ImageSpec
from runner.project.loader import load_project
from runner.project.model import Environment
from runner.project.source import open_source
from tests.helpers import commit_all, edit_file, git, make_repo

pytestmark = pytest.mark.docker

BASE = "python:3.11-slim"
MISSING_BASE = "runyard-test/nope:1"
BAD_REQUIREMENT = "no-such-package-runyard-xyz==1.0"
LABEL_PROJECT = "dev.runyard.project"
LABEL_ENV_HASH = "dev.runyard.env-hash"
LABEL_FUNCTIONS = "dev.runyard.functions"
JSON_KEYS = {"image", "functions", "env_hash", "action", "seconds", "error", "log"}
CLI_TIMEOUT = 300

HANDLER = 'def main(**params):\n    return {"ok": 1}\n'


def cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m runner ARGS` in a subprocess, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "runner", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=_plain_env(),
    )


def _plain_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    env.pop("RUNYARD_DEBUG", None)
    return env


def function_yaml(name: str, environment: str, code: str = "src/h.py") -> str:
    """A function file; `environment` is the YAML body of `environment:`, indented by 2."""
    return (
        "apiVersion: runyard/v1\n"
        "kind: function\n"
        f"name: {name}\n"
        f"code: {code}\n"
        "handler: main\n"
        "environment:\n"
        f"{environment}"
    )


def env_only(value: str, base: str = BASE) -> str:
    """A tiny environment: the base image plus one env variable (no pip, no apt)."""
    return f'  base_image: {base}\n  env: {{RUNYARD_TEST: "{value}"}}\n'


def with_requirements(*requirements: str) -> str:
    return f"  base_image: {BASE}\n  requirements: [{', '.join(requirements)}]\n"


@dataclass
class Project:
    """A project folder of the test, named uniquely for this test run."""

    root: Path
    name: str

    def function(self, name: str, environment: str) -> Path:
        path = self.root / "functions" / f"{name}.yaml"
        path.write_text(function_yaml(name, environment), "utf-8")
        return path

    def build(self, *args: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
        """`runyard build --json ARGS -C root`: what it did, and its JSON report."""
        done = cli("build", "--json", "-C", self.root, *args)
        return done, parse_report(done)


@dataclass
class Engine:
    """The Docker engine, and the projects whose images a test must remove."""

    client: docker.DockerClient
    projects: list[str] = field(default_factory=list)

    def images_of(self, project: str, *, all_layers: bool = False) -> list[dict[str, Any]]:
        images: list[dict[str, Any]] = self.client.api.images(
            all=all_layers, filters={"label": f"{LABEL_PROJECT}={project}"}
        )
        return images

    def tags_of(self, project: str) -> set[str]:
        return {tag for image in self.images_of(project) for tag in image.get("RepoTags") or ()}

    def remove_images(self, project: str) -> None:
        for image in self.images_of(project):
            # (gone already: pruned, or removed as another one's parent)
            with contextlib.suppress(ImageNotFound, APIError):
                self.client.api.remove_image(image["Id"], force=True)

    def image_events(self, since: float, until: float) -> list[dict[str, Any]]:
        """Every image event (build commits, tags, pulls, removals) in [since, until]."""
        events = self.client.events(
            since=int(since), until=int(until) + 1, decode=True, filters={"type": "image"}
        )
        return [event for event in events if since - 1 <= event.get("time", 0) <= until + 1]


def parse_report(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.stdout.strip(), f"no JSON on stdout; stderr:\n{done.stderr}"
    report: list[dict[str, Any]] = json.loads(done.stdout)
    return report


def by_function(report: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: entry for entry in report for name in entry["functions"]}


def line_of(path: Path, needle: str) -> int:
    """The 1-based number of the one line of `path` that contains `needle`."""
    lines = [n for n, text in enumerate(path.read_text("utf-8").splitlines(), 1) if needle in text]
    assert len(lines) == 1, f"{needle!r} is on lines {lines} of {path}"
    return lines[0]


def check_shape(report: list[dict[str, Any]], project: str) -> None:
    """The `build --json` report: one entry per image, each with the same keys and types."""
    assert isinstance(report, list) and report
    for entry in report:
        assert set(entry) == JSON_KEYS
        assert entry["action"] in ("built", "reused", "failed")
        assert isinstance(entry["env_hash"], str) and len(entry["env_hash"]) == 64
        assert entry["image"] == f"runyard/{project}:{entry['env_hash'][:12]}"
        assert isinstance(entry["functions"], list) and entry["functions"]
        assert entry["functions"] == sorted(entry["functions"])
        assert isinstance(entry["seconds"], (int, float)) and entry["seconds"] >= 0
        if entry["action"] == "failed":
            assert isinstance(entry["error"], str) and entry["error"]
            assert entry["log"] and Path(entry["log"]).is_file()
        else:
            assert entry["error"] is None
        if entry["action"] == "reused":
            assert entry["seconds"] == 0 and entry["log"] is None
    names = [name for entry in report for name in entry["functions"]]
    assert len(names) == len(set(names)), "a function is in one image only"


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    client = docker.from_env()
    client.ping()
    assert client.api.images(name=BASE), f"{BASE} must be on this machine (`runyard setup`)"
    found = Engine(client)
    yield found
    client.close()


@pytest.fixture
def new_project(engine: Engine, tmp_path: Path) -> Iterator[Callable[..., Project]]:
    """Make projects with a unique name each; at the end, remove the images they made."""
    made: list[str] = []

    def make(folder: str = "project") -> Project:
        name = f"rytest-{uuid.uuid4().hex[:10]}"
        root = tmp_path / folder
        (root / "functions").mkdir(parents=True)
        (root / "src").mkdir()
        (root / "project.yaml").write_text(
            f"apiVersion: runyard/v1\nkind: project\nname: {name}\ndefaults: {{base_image: {BASE}}}\n",
            "utf-8",
        )
        (root / "src" / "h.py").write_text(HANDLER, "utf-8")
        made.append(name)
        return Project(root, name)

    yield make
    for name in made:
        engine.remove_images(name)


# -- building, and not building again ------------------------------------------


def test_first_build_builds_and_second_build_touches_nothing(
    new_project: Callable[..., Project], engine: Engine
) -> None:
    project = new_project()
    project.function("alpha", with_requirements("six==1.16.0"))
    project.function("beta", env_only("beta"))

    done, first = project.build()
    assert done.returncode == 0, done.stderr
    check_shape(first, project.name)
    assert [e["action"] for e in first] == ["built", "built"]
    assert {name for e in first for name in e["functions"]} == {"alpha", "beta"}
    assert engine.tags_of(project.name) == {e["image"] for e in first}
    for entry in first:
        labels = engine.client.images.get(entry["image"]).labels
        assert labels[LABEL_PROJECT] == project.name
        assert labels[LABEL_ENV_HASH] == entry["env_hash"]
        assert labels[LABEL_FUNCTIONS] == ",".join(entry["functions"])
    alpha_image = by_function(first)["alpha"]["image"]
    listed = engine.client.containers.run(
        alpha_image, ["python", "-c", "import six; print(six.__version__)"], remove=True
    )
    assert listed.decode().strip() == "1.16.0"

    layers_before = sorted(i["Id"] for i in engine.images_of(project.name, all_layers=True))
    logs = [Path(e["log"]) for e in first]
    log_times = [log.stat().st_mtime_ns for log in logs]
    time.sleep(1.1)  # engine events have a one-second resolution
    started = time.time()
    done, second = project.build()
    ended = time.time()
    assert done.returncode == 0, done.stderr
    check_shape(second, project.name)
    assert [e["action"] for e in second] == ["reused", "reused"]
    assert [e["image"] for e in second] == [e["image"] for e in first]

    # No build happened: the engine tagged, committed or pulled nothing of ours,
    # the project's images (every layer) are the same, no build log was written.
    time.sleep(1.1)
    ours = [
        event
        for event in engine.image_events(started, ended)
        if project.name in json.dumps(event) or event.get("Action") == "pull"
    ]
    assert ours == []
    assert sorted(i["Id"] for i in engine.images_of(project.name, all_layers=True)) == layers_before
    assert [log.stat().st_mtime_ns for log in logs] == log_times


def test_human_output_says_built_and_reused(new_project: Callable[..., Project]) -> None:
    project = new_project()
    project.function("alpha", env_only("alpha"))
    done = cli("build", "-C", project.root)
    assert done.returncode == 0, done.stderr
    assert "built" in done.stdout and "(alpha)" in done.stdout
    done = cli("build", cwd=project.root / "src")  # found from a sub-folder
    assert done.returncode == 0, done.stderr
    action, tag, functions = done.stdout.split()
    assert (action, functions) == ("reused", "(alpha)")
    assert tag.startswith(f"runyard/{project.name}:")


def test_changing_one_requirement_rebuilds_only_that_image(
    new_project: Callable[..., Project], engine: Engine
) -> None:
    project = new_project()
    alpha = project.function("alpha", with_requirements("six==1.16.0"))
    project.function("beta", env_only("beta"))
    done, first = project.build()
    assert done.returncode == 0, done.stderr

    edit_file(alpha, "[six==1.16.0]", "[six==1.16.0, tomli==2.0.1]")
    done, second = project.build()
    assert done.returncode == 0, done.stderr
    check_shape(second, project.name)
    before, after = by_function(first), by_function(second)
    assert after["alpha"]["action"] == "built"
    assert after["alpha"]["env_hash"] != before["alpha"]["env_hash"]
    assert after["beta"]["action"] == "reused"
    assert after["beta"]["image"] == before["beta"]["image"]
    assert after["alpha"]["image"] in engine.tags_of(project.name)


def test_requirements_file_content_is_part_of_the_environment(
    new_project: Callable[..., Project],
) -> None:
    project = new_project()
    requirements = project.root / "reqs.txt"
    requirements.write_text("# pinned\nsix==1.16.0\n", "utf-8")
    project.function("alpha", f"  base_image: {BASE}\n  requirements_file: reqs.txt\n")
    done, first = project.build()
    assert done.returncode == 0, done.stderr
    assert [e["action"] for e in first] == ["built"]

    requirements.write_text("# pinned, and a comment changed\nsix==1.16.0\n", "utf-8")
    done, same = project.build()
    assert [e["action"] for e in same] == ["reused"], "comments are not requirements"

    requirements.write_text("six==1.16.0\ntomli==2.0.1\n", "utf-8")
    done, changed = project.build()
    assert done.returncode == 0, done.stderr
    assert [e["action"] for e in changed] == ["built"]
    assert changed[0]["env_hash"] != first[0]["env_hash"]


def test_equal_environments_share_one_image(new_project: Callable[..., Project], engine: Engine) -> None:
    project = new_project()
    # the same environment, written differently: the hash is over content, not text
    project.function("alpha", f'  base_image: {BASE}\n  env: {{A: "1", B: "2"}}\n')
    project.function("gamma", f'  env:\n    B: "2"\n    A: "1"\n  base_image: {BASE}\n')
    project.function("beta", env_only("beta"))
    done, report = project.build()
    assert done.returncode == 0, done.stderr
    check_shape(report, project.name)
    assert sorted(e["functions"] for e in report) == [["alpha", "gamma"], ["beta"]]
    shared = by_function(report)["alpha"]
    assert shared is by_function(report)["gamma"]
    assert len(engine.tags_of(project.name)) == 2
    assert engine.client.images.get(shared["image"]).labels[LABEL_FUNCTIONS] == "alpha,gamma"

    done, only = project.build("beta")
    assert done.returncode == 0, done.stderr
    assert [(e["functions"], e["action"]) for e in only] == [(["beta"], "reused")]

    done = cli("build", "-C", project.root, "nope")
    assert done.returncode == 1
    assert "no function named nope" in done.stderr


def test_the_images_asked_for_one_by_one_are_those_the_list_gives(
    new_project: Callable[..., Project],
) -> None:
    """`run` and `build` ask the engine for each image they need rather than list them all:
    the same environments (hashed with the same base image ids) and the same image ids, a
    base image written in full or missing from the engine alike."""
    project = new_project()
    project.function("alpha", env_only("alpha"))
    project.function("beta", env_only("beta", base=f"docker.io/library/{BASE}"))
    project.function("gamma", env_only("gamma", base=MISSING_BASE))
    done, _ = project.build("alpha")
    assert done.returncode == 0, done.stderr
    engine = DockerEngine()
    source = open_source(project.root)
    loaded = load_project(source)
    listed = LocalImages.read(engine)

    needs, asked = needs_and_images(engine, loaded, source)

    assert needs == image_needs(loaded, source, listed)
    assert len({need.spec.env_hash for need in needs}) == 3
    assert {need.spec.tag: asked.ids.get(need.spec.tag) for need in needs} == \
        {need.spec.tag: listed.ids.get(need.spec.tag) for need in needs}
    assert sum(need.spec.tag in asked.ids for need in needs) == 1  # alpha's, built above


def test_changing_only_the_code_rebuilds_nothing(new_project: Callable[..., Project], engine: Engine) -> None:
    project = new_project()
    project.function("alpha", env_only("alpha"))
    done, first = project.build()
    assert done.returncode == 0, done.stderr
    image = engine.client.images.get(first[0]["image"])

    (project.root / "src" / "h.py").write_text(HANDLER + "\n# a new line of code\n", "utf-8")
    (project.root / "src" / "more.py").write_text("X = 1\n", "utf-8")
    done, second = project.build()
    assert done.returncode == 0, done.stderr
    assert [(e["image"], e["action"]) for e in second] == [(first[0]["image"], "reused")]

    # and the code is not in the image
    found = engine.client.containers.run(
        image.id,
        ["sh", "-c", "grep -rl 'def main(' / --include=h.py 2>/dev/null || true"],
        remove=True,
    )
    assert found.decode().strip() == ""


# -- the Dockerfile: nothing unchecked reaches it ------------------------------


def spec_of(environment: Environment, requirements: tuple[str, ...] = ()) -> ImageSpec:
    return ImageSpec("render", environment, requirements, None, "0" * 64)


def test_render_dockerfile_of_a_valid_environment() -> None:
    environment = Environment(BASE, system_packages=("libgomp1",), setup=("echo 'a\nb'",),
                              env={"MODE": "a \"quoted\"\nvalue"})
    dockerfile = render_dockerfile(spec_of(environment, ("six==1.16.0",)), ca_bundle=False)
    assert dockerfile.count("\nFROM python:3.11-slim\n") == 1
    assert "libgomp1" in dockerfile and "ENV MODE=" in dockerfile


@pytest.mark.parametrize(("environment", "requirements"), [
    (Environment("python:3.11-slim\nADD http://127.0.0.1:9/secret /secret"), ()),
    (Environment("python:3.11-slim AS x"), ()),
    (Environment(BASE, system_packages=("curl\nRUN id",)), ()),
    (Environment(BASE, system_packages=("curl; id",)), ()),
    (Environment(BASE), ("six\n--index-url http://127.0.0.1:9/simple",)),
    (Environment(BASE), ("-e /",)),
    (Environment(BASE, env={"A=1\nRUN id\nENV B": "x"}), ()),
    (Environment(BASE, env={"A": "x\0y"}), ()),
], ids=["image-newline", "image-space", "package-newline", "package-semicolon", "requirement-newline",
        "requirement-option", "env-name-newline", "env-value-nul"])
def test_render_dockerfile_refuses_what_the_checks_refuse(
    environment: Environment, requirements: tuple[str, ...]
) -> None:
    with pytest.raises(RunyardError, match="refusing to write the Dockerfile"):
        render_dockerfile(spec_of(environment, requirements), ca_bundle=False)


# -- failures ------------------------------------------------------------------


def test_bad_requirement_fails_with_its_line_step_and_log_while_others_build(
    new_project: Callable[..., Project], engine: Engine
) -> None:
    project = new_project()
    bad = project.function("alpha", with_requirements(BAD_REQUIREMENT))
    project.function("beta", env_only("beta"))
    done, report = project.build()
    assert done.returncode == 1
    check_shape(report, project.name)
    entries = by_function(report)
    assert entries["alpha"]["action"] == "failed"
    assert entries["beta"]["action"] == "built"
    assert entries["beta"]["image"] in engine.tags_of(project.name)
    assert entries["alpha"]["image"] not in engine.tags_of(project.name)

    message = done.stderr
    line = line_of(bad, "requirements:")
    assert f"functions/alpha.yaml:{line}:" in message
    assert "function alpha" in message
    assert "pip install" in message and "step 3/" in message  # FROM, COPY, then pip
    assert BAD_REQUIREMENT.split("==")[0] in message  # pip's own words, from the log tail
    assert "last lines of" in message and entries["alpha"]["log"] in message
    assert "1 of 2 images failed" in message
    assert message == entries["alpha"]["error"] + "\n1 of 2 images failed\n"

    # The human output says the same, and beta is reused, not rebuilt.
    done = cli("build", "-C", project.root)
    assert done.returncode == 1
    assert f"functions/alpha.yaml:{line}:" in done.stderr
    assert "reused" in done.stdout and "(beta)" in done.stdout


def test_failing_setup_step_points_at_that_entry(new_project: Callable[..., Project]) -> None:
    project = new_project()
    first = project.function(
        "alpha",
        f"  base_image: {BASE}\n"
        "  setup:\n"
        "    - echo the first step works\n"
        "    - sh -c 'echo going down; exit 7'\n",
    )
    # a setup step that runs pip (or apt-get) is still that setup step
    second = project.function(
        "beta",
        f"  base_image: {BASE}\n  setup:\n    - pip install --no-index {BAD_REQUIREMENT}\n",
    )
    done, report = project.build()
    assert done.returncode == 1
    entries = by_function(report)
    assert entries["alpha"]["action"] == entries["beta"]["action"] == "failed"

    alpha_error = entries["alpha"]["error"]
    assert alpha_error.startswith(f"functions/alpha.yaml:{line_of(first, 'exit 7')}:")
    assert "step 3/" in alpha_error and "exit 7" in alpha_error
    assert "going down" in alpha_error  # the log tail
    assert "non-zero code: 7" in alpha_error

    beta_error = entries["beta"]["error"]
    assert beta_error.startswith(f"functions/beta.yaml:{line_of(second, '--no-index')}:")
    assert "step 2/" in beta_error
    assert "2 of 2 images failed" in done.stderr


def test_a_multi_line_setup_step_runs_as_one_script(new_project: Callable[..., Project]) -> None:
    project = new_project()
    project.function(
        "alpha",
        f"  base_image: {BASE}\n  setup:\n    - |\n      echo one\n      echo two > /two.txt\n",
    )
    done, report = project.build()
    assert done.returncode == 0, done.stderr
    assert [e["action"] for e in report] == ["built"]


def test_missing_base_image_fails_clearly(new_project: Callable[..., Project]) -> None:
    project = new_project()
    path = project.function("alpha", env_only("alpha", base=MISSING_BASE))
    project.function("beta", env_only("beta"))
    started = time.monotonic()
    done, report = project.build()
    assert time.monotonic() - started < 60
    assert done.returncode == 1
    entries = by_function(report)
    assert entries["beta"]["action"] == "built"
    error = entries["alpha"]["error"]
    assert error.startswith(f"functions/alpha.yaml:{line_of(path, 'base_image:')}:")
    assert "step 1/" in error and f"FROM {MISSING_BASE}" in error
    assert f"base image {MISSING_BASE} is not on this machine" in error
    assert "docker load" in error


# -- sources: a bare repository ------------------------------------------------


def test_build_from_a_revision_of_a_bare_repository(
    new_project: Callable[..., Project], tmp_path: Path
) -> None:
    project = new_project()
    project.function("alpha", env_only("alpha"))
    make_repo(project.root)
    commit_all(project.root, "the project")
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "--quiet", "--bare", "-b", "main", str(bare))
    git(project.root, "push", "--quiet", str(bare), "main")
    # the working tree changes after the push: the revision must not see it
    edit_file(project.root / "functions" / "alpha.yaml", '"alpha"', '"uncommitted"')

    done = cli("build", "--json", "-C", bare, "--revision", "HEAD")
    assert done.returncode == 0, done.stderr
    report = parse_report(done)
    check_shape(report, project.name)
    assert [(e["functions"], e["action"]) for e in report] == [(["alpha"], "built")]
    assert Path(report[0]["log"]).is_relative_to(bare)

    # the same environment read from a folder is the same image
    git(project.root, "checkout", "--quiet", "--", ".")
    done, again = project.build()
    assert done.returncode == 0, done.stderr
    assert [(e["image"], e["action"]) for e in again] == [(report[0]["image"], "reused")]

    done = cli("build", "-C", bare, "--revision", "no-such-rev")
    assert done.returncode == 1
    assert "no-such-rev" in done.stderr


def test_plan_reports_the_environment_hashes_that_build_makes(
    new_project: Callable[..., Project]
) -> None:
    project = new_project()
    project.function("alpha", env_only("alpha"))
    make_repo(project.root)
    commit_all(project.root, "the project")
    plan = json.loads(cli("plan", "--json", "-C", project.root).stdout)
    assert plan["notes"] == []
    (planned,) = plan["functions"]
    assert plan["images"] == {planned["env_hash"][:12]: ["alpha"]}
    done, report = project.build()
    assert done.returncode == 0, done.stderr
    assert planned["env_hash"] == by_function(report)["alpha"]["env_hash"]
    # without an engine the base image id is not known, and the plan says so
    unreachable = subprocess.run(
        [sys.executable, "-m", "runner", "plan", "--json", "-C", str(project.root)],
        capture_output=True, text=True, timeout=CLI_TIMEOUT,
        env={**_plain_env(), "DOCKER_HOST": "tcp://127.0.0.1:9"})
    assert unreachable.returncode == 0, unreachable.stderr
    notes = json.loads(unreachable.stdout)["notes"]
    assert len(notes) == 1 and notes[0].startswith("no Docker engine answered")


# -- runyard images ------------------------------------------------------------


def test_images_lists_them_and_prune_removes_the_unused(
    new_project: Callable[..., Project], engine: Engine
) -> None:
    project = new_project()
    project.function("alpha", env_only("alpha"))
    beta = project.function("beta", env_only("beta"))
    project.function("gamma", env_only("alpha"))
    done, first = project.build()
    assert done.returncode == 0, done.stderr
    old_beta = by_function(first)["beta"]["image"]

    done = cli("images", "--json", "-C", project.root)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert {(i["tag"], tuple(i["functions"])) for i in listed} == {
        (e["image"], tuple(e["functions"])) for e in first
    }
    for image in listed:
        assert set(image) == {"tag", "image_id", "env_hash", "size", "functions", "layer",
                              "created"}
        assert image["image_id"].startswith("sha256:") and image["size"] > 0

    done = cli("images", "-C", project.root)
    assert done.returncode == 0, done.stderr
    assert "alpha, gamma" in done.stdout and "beta" in done.stdout

    edit_file(beta, '"beta"', '"beta-2"')
    done, second = project.build()
    assert done.returncode == 0, done.stderr
    new_beta = by_function(second)["beta"]["image"]
    assert new_beta != old_beta

    done = cli("images", "-C", project.root)
    assert done.returncode == 0, done.stderr
    unused = [line for line in done.stdout.splitlines() if "(unused)" in line]
    assert len(unused) == 1 and unused[0].startswith(old_beta)

    done = cli("images", "--prune", "-C", project.root)
    assert done.returncode == 0, done.stderr
    assert f"removed {old_beta}" in done.stdout
    assert engine.tags_of(project.name) == {by_function(second)["alpha"]["image"], new_beta}
    done = cli("images", "--prune", "-C", project.root)
    assert done.returncode == 0, done.stderr
    assert "removed" not in done.stdout


# -- runyard setup -------------------------------------------------------------


def test_setup_twice_the_second_finds_everything_present(engine: Engine) -> None:
    done = cli("setup")
    assert done.returncode == 0, done.stderr + done.stdout
    time.sleep(1.1)
    started = time.time()
    done = cli("setup")
    took = time.time() - started
    assert done.returncode == 0, done.stderr + done.stdout
    assert took < 3, f"the second setup took {took:.1f}s"
    lines = done.stdout.splitlines()
    assert lines[-1] == "ready"
    assert f"{BASE}: present" in lines
    assert all(line.endswith(": present") for line in lines[:-1]), lines
    for word in ("pull", "built", "debootstrap", "started dockerd"):
        assert word not in done.stdout + done.stderr
    time.sleep(1.1)
    pulled = [
        e
        for e in engine.image_events(started, started + took)
        if e.get("Action") in ("pull", "import", "load", "tag")
    ]
    assert [e for e in pulled if BASE.split(":")[0] in json.dumps(e)] == []
