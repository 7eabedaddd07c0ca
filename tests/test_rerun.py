"""`runyard rerun UID`: a recorded run run again as it was, and compared. Real git, the
local backend where the image does not matter, Docker for the image by id."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from runner.record.model import RunRecord
from runner.record.results import ResultsBranch
from tests.helpers import CHECKOUT, commit_all, git, make_repo, sha256

NAME = f"ryrerun-{secrets.token_hex(3)}"
BRANCH = "runyard/results"

FILES = {
    "project.yaml": f"apiVersion: runyard/v1\nkind: project\nname: {NAME}\n"
                    "params: {seed: 7}\ndefaults: {base_image: python:3.11-slim}\n",
    "functions/steady.yaml": "apiVersion: runyard/v1\nkind: function\nname: steady\n"
                             "code: src/h.py\nhandler: steady\n"
                             "environment: {base_image: python:3.11-slim}\n",
    "functions/noisy.yaml": "apiVersion: runyard/v1\nkind: function\nname: noisy\n"
                            "code: src/h.py\nhandler: noisy\n"
                            "environment: {base_image: python:3.11-slim}\n",
    "jobs/tune.yaml": "apiVersion: runyard/v1\nkind: job\nname: tune\n"
                      "run: {function: steady}\nparams: {k: 1}\n"
                      "hyper: {strategy: grid, params: {k: [1, 2]}, selector: max.k}\n",
    "pipelines/two.yaml": "apiVersion: runyard/v1\nkind: pipeline\nname: two\n"
                          "params: {k: 4}\nsteps:\n"
                          "  - {name: first, function: steady}\n"
                          "  - {name: second, function: steady, params: {k: 6}, after: [first]}\n",
    "pipelines/mixed.yaml": "apiVersion: runyard/v1\nkind: pipeline\nname: mixed\nsteps:\n"
                            "  - {name: sure, function: steady}\n"
                            "  - {name: roll, function: noisy, after: [sure]}\n",
    "jobs/dice.yaml": "apiVersion: runyard/v1\nkind: job\nname: dice\nrun: {pipeline: mixed}\n",
    "pipelines/chain.yaml": "apiVersion: runyard/v1\nkind: pipeline\nname: chain\nsteps:\n"
                            "  - {name: first, function: steady}\n"
                            "  - {name: second, function: steady, "
                            "inputs: {data: step://first/echo}}\n",
    "jobs/chained.yaml": "apiVersion: runyard/v1\nkind: job\nname: chained\n"
                         "run: {pipeline: chain}\nhyper: {params: {k: [1, 2]}}\n",
    "jobs/flow.yaml": "apiVersion: runyard/v1\nkind: job\nname: flow\nrun: {pipeline: two}\n",
    "src/h.py": "import hashlib\nimport random\n\n\n"
                "def steady(context, k=1, data=None):\n"
                "    body = data.get() if data is not None else b''\n"
                "    context.log_results({'k': k, 'seed': context.get_param('seed'),\n"
                "                         'sha': hashlib.sha256(body).hexdigest()})\n"
                "    context.log_artifact('echo', body=f'k={k} size={len(body)}\\n')\n\n\n"
                "def noisy(context):\n"
                "    context.log_results({'x': random.random()})\n",
    ".gitignore": ".runyard/\n",
}

Record = dict[str, Any]


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "project")
    for path, text in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    commit_all(root, "a project to rerun")
    return root


def runyard(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=repo,
                          capture_output=True, text=True, timeout=300)


def run(repo: Path, *args: str) -> Record:
    done = runyard(repo, "run", *args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    record: Record = json.loads(done.stdout)
    return record


def rerun(repo: Path, uid: str, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    done = runyard(repo, "rerun", uid, *args)
    assert done.returncode == expect, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done


def record_of(repo: Path, uid: str) -> Record:
    record: Record = yaml.safe_load(git(repo, "show", f"{BRANCH}:runs/{uid[-2:]}/{uid}/run.yaml"))
    return record


def newest_rerun(repo: Path, old: str) -> Record:
    """The one rerun of run `old` (a second one would be a test's mistake)."""
    found = [record_of(repo, uid) for uid in _all_uids(repo)]
    reruns = [r for r in found if r["metadata"].get("rerun_of") == old]
    assert len(reruns) == 1
    return reruns[0]


def _all_uids(repo: Path) -> list[str]:
    return [line.rsplit("/", 2)[-2] for line in
            git(repo, "ls-tree", "-r", "--name-only", BRANCH, "runs").split()
            if line.endswith("/run.yaml")]


def test_a_function_run_reruns_with_its_params_and_reproduces(repo: Path) -> None:
    old = run(repo, "steady", "--backend", "local", "-p", "k=3")
    done = rerun(repo, old["metadata"]["uid"][:10])
    assert "reproduced" in done.stdout and "not reproduced" not in done.stdout
    new = newest_rerun(repo, old["metadata"]["uid"])
    assert new["spec"]["params"] == old["spec"]["params"]
    assert new["spec"]["revision"] == old["spec"]["revision"]
    assert new["spec"]["backend"] == "local"
    assert new["status"]["results"] == old["status"]["results"]
    assert "rerun_of" not in old["metadata"]
    schema = json.loads((CHECKOUT / "schemas" / "run.schema.json").read_text("utf-8"))
    jsonschema.validators.validator_for(schema)(schema).validate(new)


def test_a_nondeterministic_run_is_listed_as_differing(repo: Path) -> None:
    old = run(repo, "noisy", "--backend", "local")
    done = rerun(repo, old["metadata"]["uid"], "--json", expect=1)
    shown = json.loads(done.stdout)
    assert not shown["reproduced"] and shown["rerun_of"] == old["metadata"]["uid"]
    assert shown["differences"] == [{"what": "result x", "old": old["status"]["results"]["x"],
                                     "new": shown["record"]["status"]["results"]["x"]}]
    done = rerun(repo, old["metadata"]["uid"], expect=1)
    assert "not reproduced" in done.stdout
    line = next(line for line in done.stdout.splitlines() if line.startswith("result x"))
    assert str(old["status"]["results"]["x"]) in line
    assert "did not reproduce" in done.stderr
    pipeline = run(repo, "dice", "--backend", "local")
    done = rerun(repo, pipeline["metadata"]["uid"], expect=1)
    assert [line.split()[:4] for line in done.stdout.splitlines() if line.startswith("step")] == \
           [["step", "roll", "result", "x"]]


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_inputs_come_from_the_store_not_the_url_again(repo: Path, served: tuple[Path, str]) -> None:
    folder, url = served
    (folder / "data.csv").write_bytes(b"a,b\n1,2\n")
    old = run(repo, "steady", "--backend", "local", "-i", f"data={url}/data.csv")
    flow = run(repo, "flow", "--backend", "local", "-i", f"data={url}/data.csv")
    (folder / "data.csv").write_bytes(b"a,b\n3,4\n")
    rerun(repo, old["metadata"]["uid"])
    new = newest_rerun(repo, old["metadata"]["uid"])
    assert new["spec"]["inputs"]["data"]["hash"] == sha256(b"a,b\n1,2\n")
    assert new["spec"]["inputs"]["data"]["uri"].endswith("/data.csv")  # seen by its name
    assert new["status"]["results"]["sha"] == old["status"]["results"]["sha"]
    assert "reproduced" in rerun(repo, flow["metadata"]["uid"]).stdout
    steps = newest_rerun(repo, flow["metadata"]["uid"])["status"]["steps"]
    assert {record_of(repo, s["uid"])["spec"]["inputs"]["data"]["hash"] for s in steps} == \
           {sha256(b"a,b\n1,2\n")}


def test_an_input_missing_from_the_store(repo: Path, served: tuple[Path, str]) -> None:
    folder, url = served
    (folder / "data.csv").write_bytes(b"first\n")
    old = run(repo, "steady", "--backend", "local", "-i", f"data={url}/data.csv")
    stored = sha256(b"first\n").removeprefix("sha256:")
    (repo / ".runyard" / "artifacts" / "sha256" / stored[:2] / stored).unlink()
    before = git(repo, "rev-parse", BRANCH)
    done = rerun(repo, old["metadata"]["uid"], "--exact", expect=1)
    assert "input data" in done.stderr and "missing from the artifact store" in done.stderr
    assert git(repo, "rev-parse", BRANCH) == before
    done = rerun(repo, old["metadata"]["uid"])  # read again from its URL: the same bytes
    assert "input data: missing from the artifact store, read again" in done.stdout
    assert "reproduced" in done.stdout


def test_a_hyper_parent_reruns_whole(repo: Path) -> None:
    old = run(repo, "tune", "--backend", "local")
    done = rerun(repo, old["metadata"]["uid"])
    assert "reproduced" in done.stdout
    new = newest_rerun(repo, old["metadata"]["uid"])
    assert [t["results"] for t in new["status"]["trials"]] == \
           [t["results"] for t in old["status"]["trials"]]
    assert new["status"]["best_iteration"] == old["status"]["best_iteration"]
    assert all(record_of(repo, t["uid"])["metadata"]["parent"] == new["metadata"]["uid"]
               for t in new["status"]["trials"])
    chained = run(repo, "chained", "--backend", "local")
    assert "reproduced" in rerun(repo, chained["metadata"]["uid"]).stdout
    trial, parent = chained["status"]["trials"][0]["uid"], chained["metadata"]["uid"]
    before = git(repo, "rev-parse", BRANCH)
    refused = rerun(repo, trial, expect=1).stderr  # not "its function None is not in the project"
    assert refused.strip() == (f"run {trial} is a pipeline run inside run {parent} (trial 1): it "
                               f"reruns with its parent (runyard rerun {parent}), or rerun one "
                               "of its steps alone")
    assert git(repo, "rev-parse", BRANCH) == before
    by_hand = run(repo, "steady", "--backend", "local", "--hyper", "k=3,4", "--handler", "steady")
    assert "reproduced" in rerun(repo, by_hand["metadata"]["uid"]).stdout
    again = newest_rerun(repo, by_hand["metadata"]["uid"])
    assert [t["params"] for t in again["status"]["trials"]] == [{"k": 3}, {"k": 4}]


def test_a_pipeline_run_reruns_whole_and_a_step_alone(repo: Path) -> None:
    old = run(repo, "flow", "--backend", "local", "-p", "k=9")
    assert "reproduced" in rerun(repo, old["metadata"]["uid"]).stdout
    new = newest_rerun(repo, old["metadata"]["uid"])
    assert [s["name"] for s in new["status"]["steps"]] == ["first", "second"]
    steps = [record_of(repo, s["uid"]) for s in new["status"]["steps"]]
    assert [s["status"]["results"]["k"] for s in steps] == [9, 6]
    second = old["status"]["steps"][1]["uid"]
    assert "reproduced" in rerun(repo, second).stdout
    alone = newest_rerun(repo, second)
    assert alone["spec"]["params"] == record_of(repo, second)["spec"]["params"]
    assert alone["status"]["results"]["k"] == 6


def test_bad_uids_and_a_lost_revision_are_refused_writing_nothing(repo: Path) -> None:
    old = run(repo, "steady", "--backend", "local", "--uid", "abcd" + "0" * 12)
    run(repo, "steady", "--backend", "local", "--uid", "abcd" + "1" * 12)
    before = git(repo, "rev-parse", BRANCH)
    assert "no run" in rerun(repo, "ffffffff", expect=1).stderr
    assert rerun(repo, "abcd", expect=1).stderr.strip() == (  # the ones to pick from
        f"2 runs on branch {BRANCH} with uid starting 'abcd': {'abcd' + '0' * 12}, "
        f"{'abcd' + '1' * 12}")
    assert "a run's uid" in rerun(repo, " ", expect=1).stderr
    (repo / "src" / "h.py").write_text((repo / "src" / "h.py").read_text() + "\n# changed\n")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--amend", "--no-verify", "-m", "history rewritten")
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "--quiet", "--prune=now")
    done = rerun(repo, old["metadata"]["uid"], expect=1)
    assert "no longer in the repository" in done.stderr
    assert git(repo, "rev-parse", BRANCH) == before


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


@pytest.mark.docker
def test_the_image_by_id_and_exact_with_the_image_removed(repo: Path) -> None:
    old = run(repo, "steady", "-p", "k=5")
    image_id = old["spec"]["image_id"]
    try:
        assert "image of steady: sha256:" in rerun(repo, old["metadata"]["uid"], "--exact").stdout
        assert newest_rerun(repo, old["metadata"]["uid"])["spec"]["image_id"] == image_id
        docker("rmi", "-f", image_id)
        done = rerun(repo, old["metadata"]["uid"], "--exact")
        assert "is gone, rebuilt as" in done.stdout and "environment hash matches" in done.stdout
        assert "reproduced" in done.stdout
        assert "--exact cannot rerun it on local" in \
            rerun(repo, old["metadata"]["uid"], "--exact", "--backend", "local", expect=1).stderr
        other = _with_env_hash(repo, old["metadata"]["uid"], "0" * 12)  # as an older runyard's
        before = git(repo, "rev-parse", BRANCH)
        done = rerun(repo, other, "--exact", expect=1)
        assert "rebuilt one's environment hash differs" in done.stderr
        assert git(repo, "rev-parse", BRANCH) == before
        assert "environment hash differs" in rerun(repo, other).stdout
    finally:
        ids = docker("images", "-q", f"runyard/{NAME}").split()
        subprocess.run(["docker", "rmi", "-f", image_id, *ids], capture_output=True, check=False)


def _with_env_hash(repo: Path, uid: str, env_hash: str) -> str:
    """A copy of run `uid`'s record under a new uid, with another environment hash."""
    record = RunRecord.from_dict(record_of(repo, uid), uid)
    copy = uid[:-1] + ("0" if uid[-1] != "0" else "1")
    meta, spec = record.metadata, record.spec
    changed = dataclasses.replace(record, metadata=dataclasses.replace(meta, uid=copy),
                                  spec=dataclasses.replace(spec, env_hash=env_hash))
    results = ResultsBranch(repo / ".git", BRANCH)
    try:
        results.write(changed)
    finally:
        results.close()
    return copy
