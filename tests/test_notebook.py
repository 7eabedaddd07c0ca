"""Notebooks as functions: `code: notebooks/x.ipynb`, run headless in the function's image.

The checks and the cells runyard injects are tested on their own; the runs are real
(Docker, git, the image built with Jupyter's packages, a kernel in a container with no
network), on the project under tests/projects/notebook, renamed per session.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import math
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from runner.errors import RunyardError
from runner.project.environment import NOTEBOOK_REQUIREMENTS, image_spec, notebook_requirements
from runner.project.loader import load_project
from runner.project.notebooks import problems
from runner.project.source import DirectorySource
from runner.run.secrets import Secrets
from runner.run.task import function_task
from tests.helpers import CHECKOUT, RunCli, committed_copy, copy_project

PROJECT = CHECKOUT / "tests" / "projects" / "notebook"
RUNTIME = CHECKOUT / "runner" / "runtime"
NAME = f"rynb-{secrets.token_hex(3)}"


def _runtime_module(name: str) -> ModuleType:
    """A module of the runtime, imported as the runtime imports itself (not through runner)."""
    entry = importlib.util.spec_from_file_location("_nb_test_entry", RUNTIME / "entry.py")
    assert entry is not None and entry.loader is not None
    module = importlib.util.module_from_spec(entry)
    entry.loader.exec_module(module)
    module._load_package()
    return importlib.import_module(f"{module.PACKAGE}.{name}")


notebook_runtime = _runtime_module("notebook")


def notebook(cells: list[dict[str, Any]], minor: int = 5, language: str = "python") -> dict[str, Any]:
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "language": language}},
            "nbformat": 4, "nbformat_minor": minor}


def cell(source: str, *tags: str) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": None, "metadata": {"tags": list(tags)},
            "outputs": [], "source": source}


def dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1) + "\n"  # as Jupyter writes them


# --- the injected cells ----------------------------------------------------------------------


def test_params_go_after_the_parameters_cell_and_the_context_first() -> None:
    original = notebook([cell("import os"), cell("lr = 0.1", "parameters"), cell("print(lr)")])
    injected, origins = notebook_runtime.inject(original, "/runyard/spec.json", "/rt/entry.py",
                                                {"lr": 0.5}, ["table"])
    sources = [c["source"] for c in injected["cells"]]
    tags = [c["metadata"]["tags"] for c in injected["cells"]]
    assert tags == [["runyard-context"], [], ["parameters"], ["injected-parameters"], []]
    assert "run_path('/rt/entry.py'" in sources[0] and "('/runyard/spec.json')" in sources[0]
    assert sources[3].splitlines()[1:] == ["lr = 0.5", "table = context.get_input('table')"]
    assert origins == [None, 0, 1, None, 2]
    assert [c.get("id") for c in injected["cells"]] == [
        "runyard-context", None, None, "injected-parameters", None]
    assert original["cells"][0]["source"] == "import os"  # the original is left as it was


def test_without_a_parameters_cell_the_params_go_first() -> None:
    injected, origins = notebook_runtime.inject(notebook([cell("x = 1")], minor=4), "s", "e",
                                                {"x": 2}, [])
    assert [c["metadata"]["tags"] for c in injected["cells"]] == [
        ["runyard-context"], ["injected-parameters"], []]
    assert origins == [None, None, 0]
    assert all("id" not in c for c in injected["cells"])  # format 4.4 has no cell ids


def test_cells_an_earlier_run_injected_are_replaced_not_doubled() -> None:
    first, _ = notebook_runtime.inject(notebook([cell("a = 1", "parameters"), cell("print(a)")]),
                                       "s", "e", {"a": 2}, [])
    again, origins = notebook_runtime.inject(first, "s", "e", {"a": 3}, [])
    assert [c["metadata"]["tags"] for c in again["cells"]] == [
        ["runyard-context"], ["parameters"], ["injected-parameters"], []]
    assert again["cells"][2]["source"].endswith("a = 3")
    assert origins == [None, 1, None, 3]  # indexes in the notebook as it was given


def test_the_parameters_cell_sets_every_value_as_it_was() -> None:
    params = {"lr": 0.1, "name": "it's \"quoted\"\n", "flags": [True, None, {"a": [1, 2]}],
              "big": 10**30, "inf": math.inf, "nan": math.nan, "my-param": 3, "class": 1,
              "context": "never the context"}
    source = notebook_runtime.parameters_source(params, ["table", "not-a-name"])
    scope: dict[str, Any] = {"context": type("C", (), {"get_input": staticmethod(lambda n: f"<{n}>")})}
    exec(source, scope)
    assert (scope["lr"], scope["name"], scope["flags"], scope["big"]) == (
        0.1, "it's \"quoted\"\n", [True, None, {"a": [1, 2]}], 10**30)
    assert scope["inf"] == math.inf and math.isnan(scope["nan"])
    assert scope["table"] == "<table>"
    assert "context.get_param('my-param')" in source and "context.get_input('not-a-name')" in source
    assert "class =" not in source and "context =" not in source


def test_the_kernels_context_writes_what_it_logs_at_once(tmp_path: Path) -> None:
    """The context a notebook gets is made from the spec by the injected cell (here in
    a plain Python, as a kernel would run it) and leaves each result on disk as logged."""
    work, outputs = tmp_path / "work", tmp_path / "outputs"
    work.mkdir()
    (outputs / "artifacts").mkdir(parents=True)
    spec = {"uid": "u1", "name": "explore", "project": "p", "code": "nb.ipynb", "handler": None,
            "params": {"job": {"lr": 0.5}}, "resolved": {"lr": 0.5}, "inputs": {},
            "paths": {"code": str(tmp_path), "work": str(work), "outputs": str(outputs)}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    script = "\n".join([
        notebook_runtime.context_source(str(tmp_path / "spec.json"), str(RUNTIME / "entry.py")),
        "context.log_result('lr_seen', context.get_param('lr'))",
        "import json, os",
        "print(json.load(open(os.path.join(context.artifact_dir, '..', 'results.json'))))",
        "context.log_artifact('note', body='hello', format='txt')",
        "print(sorted(a['key'] for a in json.load(open(os.path.join("
        "context.artifact_dir, '..', 'artifacts.json')))))",
    ])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=work, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["{'lr_seen': 0.5}", "['note']"]


def test_a_notebook_needs_jupyters_packages_and_says_so(tmp_path: Path) -> None:
    """Where the image's packages are missing (a plain Python), the run says what it needs."""
    (tmp_path / "nb.ipynb").write_text(dump(notebook([cell("x = 1")])))
    spec = {"uid": "u2", "name": "nb", "code": "nb.ipynb", "resolved": {}, "inputs": {},
            "paths": {"code": str(tmp_path), "work": str(tmp_path / "work"),
                      "outputs": str(tmp_path / "outputs")}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, "-S", str(RUNTIME / "entry.py"), str(tmp_path / "spec.json")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    error = json.loads((tmp_path / "outputs" / "error.json").read_text())
    assert error["type"] == "NotebookError"
    assert "needs nbclient, nbformat, nbconvert, ipykernel" in error["message"]


def test_secrets_are_masked_in_the_notebook_as_the_host_masks_them() -> None:
    values = ["pa$$ \"word\"/é", "x" * 3, "-----BEGIN KEY-----\nc2VjcmV0IGxpbmU=\n-----END KEY-----"]
    host = Secrets({f"S{i}": value for i, value in enumerate(values)})
    assert notebook_runtime.secret_forms(values) == host.forms
    executed = notebook([{**cell("print(1)"), "outputs": [
        {"output_type": "stream", "name": "stdout", "text": [f"is {values[0]}\n"]},
        {"output_type": "execute_result", "data": {"text/plain": repr(values[0])}}]}])
    masked = notebook_runtime.mask(executed, host.forms)
    outputs = masked["cells"][0]["outputs"]
    assert outputs[0]["text"] == ["is ***\n"] and outputs[1]["data"]["text/plain"] == "'***'"
    assert masked["nbformat"] == 4 and executed["cells"][0]["outputs"][0]["text"] == [f"is {values[0]}\n"]


# --- the checks ------------------------------------------------------------------------------


def test_a_good_notebook_has_no_problems() -> None:
    text = (PROJECT / "notebooks" / "explore.ipynb").read_text()
    assert problems("notebooks/explore.ipynb", text) == []


def test_two_parameters_cells_are_refused_at_the_second() -> None:
    text = dump(notebook([cell("a = 1", "parameters"), cell("b = 2"), cell("c = 3", "parameters")]))
    found = problems("nb.ipynb", text)
    assert len(found) == 1
    starts = [number for number, row in enumerate(text.splitlines(), 1) if row == "  {"]
    assert (found[0].file, found[0].line, found[0].col) == ("nb.ipynb", starts[2], 3)
    assert "cell 3 is tagged `parameters`, as cell 1 is" in found[0].message


def test_a_notebook_that_is_not_json_is_refused_at_the_line() -> None:
    found = problems("nb.ipynb", '{\n "cells": [\n  {"cell_type": "code",}\n ]\n}\n')
    assert [(p.line, p.col) for p in found] == [(3, 24)]  # at the "}" after the comma
    assert found[0].message.startswith("the notebook is not valid JSON: Expecting property name")


@pytest.mark.parametrize(("data", "message"), [
    (notebook([cell("x")], language="R"), "the notebook's kernel is 'R'"),
    ({**notebook([cell("x")]), "nbformat": 3}, "nbformat 3: runyard runs notebooks of format 4"),
    ({"metadata": {}, "nbformat": 4}, "the notebook has no list of `cells`"),
    (notebook([{"cell_type": "widget", "source": ""}]), "cell 1: cell_type 'widget' is none of"),
    (notebook([{"cell_type": "code", "source": 3}]), "cell 1: its source is neither"),
])
def test_what_is_no_python_notebook_is_refused(data: dict[str, Any], message: str) -> None:
    found = problems("nb.ipynb", dump(data))
    assert len(found) == 1 and found[0].message.startswith(message), found


def _validate(run_cli: RunCli, project: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("validate", cwd=project)


def test_validate_names_the_notebook_line_and_reason(run_cli: RunCli, tmp_path: Path) -> None:
    project = copy_project(PROJECT, tmp_path / "project")
    text = dump(notebook([cell("a = 1", "parameters"), cell("a = 2", "parameters")]))
    (project / "notebooks" / "explore.ipynb").write_text(text)
    done = _validate(run_cli, project)
    assert done.returncode == 1, done.stdout + done.stderr
    second = [n for n, row in enumerate(text.splitlines(), 1) if row == "  {"][1]
    assert f"notebooks/explore.ipynb:{second}:3: cell 2 is tagged `parameters`, as cell 1 is" \
        in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_a_handler_for_a_notebook_is_refused(run_cli: RunCli, tmp_path: Path) -> None:
    project = copy_project(PROJECT, tmp_path / "project")
    function = project / "functions" / "explore.yaml"
    function.write_text(function.read_text() + "handler: main\n")
    job = project / "jobs" / "explore.yaml"
    job.write_text(job.read_text().replace("run: {function: explore}",
                                           "run: {function: explore, handler: main}"))
    done = _validate(run_cli, project)
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert "functions/explore.yaml:9:10: a notebook runs top to bottom and has no handler" in out
    assert "jobs/explore.yaml:4:35: function 'explore' runs a notebook; a notebook runs" in out


def test_only_notebook_functions_get_jupyters_packages(tmp_path: Path) -> None:
    project = load_project(DirectorySource(PROJECT))
    explore = project.functions["explore"]
    notebook_image = image_spec(project, explore, DirectorySource(PROJECT), {})
    assert notebook_image.requirements == NOTEBOOK_REQUIREMENTS
    as_python = image_spec(project, _with(explore, code="src/explore.py"), DirectorySource(PROJECT), {})
    assert as_python.requirements == ()
    assert as_python.env_hash != notebook_image.env_hash
    # a pin of the user's own wins over runyard's
    assert notebook_requirements(["nbconvert==7.16.0", "pandas"]) == [
        r for r in NOTEBOOK_REQUIREMENTS if not r.startswith("nbconvert")]


def test_a_handler_asked_of_a_notebook_is_an_error() -> None:
    project = load_project(DirectorySource(PROJECT))
    assert function_task(project, "explore").handler is None
    with pytest.raises(RunyardError, match=r"runs the notebook notebooks/explore\.ipynb"):
        function_task(project, "explore", handler="main")


def _with(function: Any, **changes: Any) -> Any:
    return dataclasses.replace(function, **changes)


# --- runs, on real Docker --------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = committed_copy(PROJECT, tmp_path_factory.mktemp("notebook") / "project",
                          ("rynb", NAME), "the notebook test project")
    yield path
    listed = _runyard("runs", "list", "--all", "--json", cwd=path)
    tags = {r["spec"]["image"] for r in json.loads(listed.stdout or "[]") if r["spec"].get("image")}
    for tag in tags:  # untag this module's image; its layers stay cached
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


def _runyard(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _run(repo: Path, *args: str, expect: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = _runyard("run", *args, "--json", cwd=repo, env=env)
    assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    record: dict[str, Any] = json.loads(done.stdout)
    return record


@pytest.mark.docker
def test_a_notebook_runs_with_params_inputs_and_context(repo: Path, tmp_path: Path) -> None:
    marker = f"zebra-{secrets.token_hex(4)}"
    secret = f"s3cr3t-{secrets.token_hex(8)}"
    record = _run(repo, "explore", "-p", f"title={marker}", expect=0,
                  env={**os.environ, "RY_NB_SECRET": secret})
    status = record["status"]
    assert status["state"] == "completed", status
    assert status["results"] == {"above": 2, "title": marker, "seed": 7, "work_files": ["names.txt"]}
    assert {a["key"] for a in status["artifacts"]} == {"names", "notebook", "notebook-html"}
    uid = record["metadata"]["uid"]
    assert record["spec"]["handler"] is None

    html = tmp_path / "explore.html"
    done = _runyard("runs", "artifact", uid, "notebook-html", "-o", html, cwd=repo)
    assert done.returncode == 0, done.stderr
    page = html.read_text("utf-8")
    assert page.lstrip().lower().startswith("<!doctype html>")
    assert marker in page  # in the injected cell, and in the cell output that printed it
    assert "the secret is ***" in page and secret not in page

    executed = json.loads(_runyard("runs", "artifact", uid, "notebook", cwd=repo).stdout)
    tags = [c["metadata"].get("tags", []) for c in executed["cells"]]
    assert tags.index(["injected-parameters"]) == tags.index(["parameters"]) + 1
    injected = "".join(executed["cells"][tags.index(["injected-parameters"])]["source"])
    assert f"title = '{marker}'" in injected and "threshold = 2" in injected
    assert "table = context.get_input('table')" in injected
    printed = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("name") == "stdout"]
    assert any(f"{marker}: 2 of 4 rows above 2" in "".join(o["text"]) for o in printed)
    assert any("the secret is ***" in "".join(o["text"]) for o in printed)
    log = _runyard("runs", "logs", uid, cwd=repo).stdout
    assert f"{marker}: 2 of 4 rows above 2" in log  # a cell's printed output reaches the log
    found = subprocess.run(["git", "grep", "-F", secret, "runyard/results"], cwd=repo,
                           capture_output=True, text=True)
    assert found.returncode == 1, found.stdout
    assert secret not in json.dumps(executed)
    assert _runyard("runs", "artifact", uid, "names", cwd=repo).stdout == "cyd\ndee"
    # the kernel worked in the hardened container, without any network
    assert yaml.safe_load((repo / "functions" / "explore.yaml").read_text())["network"] == "none"


@pytest.mark.docker
def test_a_notebook_that_raises_fails_the_run_with_the_cells_error(repo: Path) -> None:
    record = _run(repo, "broken", expect=1)
    status = record["status"]
    assert status["state"] == "failed"
    assert status["error"] == ("NotebookError: cell 3 of notebooks/broken.ipynb raised ValueError: "
                               "the data is bad: 3 rows")
    assert status["results"] == {"before": 1}  # logged before the failing cell, kept
    assert {a["key"] for a in status["artifacts"]} == {"notebook", "notebook-html"}
    log = _runyard("runs", "logs", record["metadata"]["uid"], cwd=repo).stdout
    assert "first cell ran" in log
    assert "----> 1 check(3)" in log and "ValueError: the data is bad: 3 rows" in log
    assert "\x1b[" not in log  # the kernel's colours are taken out


@pytest.mark.docker
def test_a_kernel_that_dies_fails_the_run_naming_the_cell(repo: Path) -> None:
    record = _run(repo, "dies", expect=1)
    status = record["status"]
    assert status["state"] == "failed"
    assert status["error"] == "NotebookError: the kernel died while it ran cell 2 of notebooks/dies.ipynb"
    assert {a["key"] for a in status["artifacts"]} == {"notebook", "notebook-html"}
    log = _runyard("runs", "logs", record["metadata"]["uid"], cwd=repo).stdout
    assert "about to end the kernel" in log
