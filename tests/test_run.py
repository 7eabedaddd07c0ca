"""`runyard run` and `runyard runs`, end to end: real Docker, real git, no mocks.

The project under tests/projects/run is copied once per session into a git repository
under a unique project name (so its image tag is this session's own); every test
runs against that repository, and the one image is built once and then reused.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.helpers import CHECKOUT, RunCli, committed_copy, edit_file, git, make_repo, sha256

PROJECT = CHECKOUT / "tests" / "projects" / "run"
RUN_SCHEMA = CHECKOUT / "schemas" / "run.schema.json"
BRANCH = "runyard/results"
NAME = f"rytest-{secrets.token_hex(3)}"

pytestmark = pytest.mark.docker


# --- helpers -------------------------------------------------------------------------------


def runyard(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
    """`python -m runner ARGS` in `cwd` (for session fixtures, where `run_cli` cannot go)."""
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def run_json(repo: Path, *args: str, env: dict[str, str] | None = None,
             expect: int = 0) -> dict[str, Any]:
    """`runyard run ARGS --json` in `repo`: check its exit code, return the printed record."""
    done = runyard("run", *args, "--json", cwd=repo, env=env)
    assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    record: dict[str, Any] = json.loads(done.stdout)
    return record


def record_path(uid: str, name: str = "run.yaml") -> str:
    return f"runs/{uid[-2:]}/{uid}/{name}"


def show(repo: Path, path: str) -> str:
    """A file of the results branch, read with plain `git show`."""
    return git(repo, "show", f"{BRANCH}:{path}")



def artifact_hashes(record: dict[str, Any]) -> dict[str, str]:
    return {a["key"]: a["hash"] for a in record["status"]["artifacts"]}


def new_project(dest: Path) -> Path:
    """A copy of the test project, named for this session, committed on branch main."""
    return committed_copy(PROJECT, dest, ("rytest", NAME), "the run test project")


def results_tip(repo: Path) -> str:
    """The results branch's commit ('' before the first run)."""
    return subprocess.run(["git", "rev-parse", "-q", "--verify", BRANCH], cwd=repo,
                          capture_output=True, text=True).stdout.strip()


def tree_state(repo: Path) -> dict[str, str]:
    """What a run must not touch: branch, HEAD, index, tracked files' status, stash."""
    return {
        "branch": git(repo, "rev-parse", "--abbrev-ref", "HEAD"),
        "head": git(repo, "rev-parse", "HEAD"),
        "index": git(repo, "ls-files", "--stage"),
        "status": git(repo, "status", "--porcelain", "--untracked-files=no"),
        "diff": git(repo, "diff"),
        "staged": git(repo, "diff", "--cached"),
    }


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The test project as a git repository, shared by the whole session."""
    path = new_project(tmp_path_factory.mktemp("run") / "project")
    yield path
    tags = {r["spec"]["image"] for r in _records(path) if r["spec"].get("image")}
    for tag in tags:  # untag this session's image; its layers stay cached for the next one
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


def _records(repo: Path) -> list[dict[str, Any]]:
    done = runyard("runs", "list", "--all", "--limit", "1000", "--json", cwd=repo)
    return json.loads(done.stdout) if done.returncode == 0 else []


@pytest.fixture(scope="session")
def calc_run(repo: Path) -> dict[str, Any]:
    """`calc` with x=3 in Docker: the reference run several tests read."""
    return run_json(repo, "calc", "-p", "x=3")


# --- running in Docker ---------------------------------------------------------------------


def test_function_run_in_docker_completes(repo: Path, calc_run: dict[str, Any]) -> None:
    status = calc_run["status"]
    assert status["state"] == "completed"
    assert status["exit_code"] == 0
    assert status["results"] == {"sum": 5, "seed": 7, "product": 6}
    assert artifact_hashes(calc_run) == {
        "report": sha256(b"x=3 y=2\n"), "table": sha256(b"a b\n")}
    spec = calc_run["spec"]
    assert spec["backend"] == "docker"
    assert spec["image"].startswith(f"runyard/{NAME}:")
    assert spec["params"]["override"] == {"x": 3}
    assert spec["params"]["resolved"] == {"seed": 7, "x": 3}
    assert spec["revision"] == git(repo, "rev-parse", "HEAD").strip()
    assert spec["dirty"] is False
    # what --json printed is what was recorded
    assert yaml.safe_load(show(repo, record_path(calc_run["metadata"]["uid"]))) == calc_run
    assert "calc with x=3 y=2" in show(repo, record_path(calc_run["metadata"]["uid"], "log.txt"))
    # the newest artifact of each key points back at the run that made it (until replaced)
    newest = yaml.safe_load(show(repo, "artifacts/table.yaml"))
    assert newest["hash"] == sha256(b"a b\n")


def test_a_run_loads_neither_the_docker_sdk_nor_requests(repo: Path, calc_run: dict[str, Any]) -> None:
    """What keeps `runyard run` light: the engine is reached with runyard's own HTTP/1.1
    (runner.build.http1), not even the standard library's http.client with its email
    parser and ssl (URL inputs alone need those); nothing of building, reporting,
    planning or scheduling is loaded (schedules are checked by runner.project.when; the
    fire times' croniter and zoneinfo are the scheduler's); the package's files are
    found without importlib.resources (whose readers import zipfile)."""
    script = (
        "import sys, runner.cli\n"
        "try:\n"
        f"    runner.cli.main(['run', 'calc', '-p', 'x=4', '-C', {str(repo)!r}])\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code)\n"
        "heavy = ('docker', 'requests', 'urllib3', 'jinja2', 'rich', 'jsonschema', 'croniter',\n"
        "         'dateutil', 'runner.project.schedule', 'runner.plan', 'zipfile',\n"
        "         'importlib.resources', 'http.client', 'ssl', 'email', 'urllib.request',\n"
        "         'zoneinfo', 'secrets')\n"
        "print('loaded:', *sorted({m.split('.')[0] for m in sys.modules} & set(heavy)),\n"
        "      *sorted(set(sys.modules) & set(heavy)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "loaded:", done.stdout


def test_record_read_with_git_show_is_valid(repo: Path, calc_run: dict[str, Any]) -> None:
    record = yaml.safe_load(show(repo, record_path(calc_run["metadata"]["uid"])))
    schema = json.loads(RUN_SCHEMA.read_text("utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(record)]
    assert errors == []


def test_failing_handler(repo: Path, run_cli: RunCli) -> None:
    record = run_json(repo, "calc", "--handler", "fail", expect=1)
    status = record["status"]
    assert status["state"] == "failed"
    assert status["reason"] == "error"
    assert status["exit_code"] not in (0, None)
    assert "boom on purpose" in status["error"]
    logs = run_cli("runs", "logs", record["metadata"]["uid"], cwd=repo)
    assert logs.returncode == 0, logs.stderr
    assert "about to fail" in logs.stdout
    assert "Traceback (most recent call last)" in logs.stdout
    assert "ValueError: boom on purpose" in logs.stdout


def test_timeout(repo: Path) -> None:
    started = time.monotonic()
    record = run_json(repo, "sleepy", expect=1)
    assert time.monotonic() - started < 30  # the handler sleeps 60 s; the limit is 2 s
    assert record["status"]["state"] == "failed"
    assert record["status"]["reason"] == "timeout"
    assert record["spec"]["resources"]["timeout"] == 2
    assert "going to sleep" in show(repo, record_path(record["metadata"]["uid"], "log.txt"))


def test_out_of_memory(repo: Path) -> None:
    record = run_json(repo, "hog", expect=1)
    assert record["status"]["state"] == "failed"
    assert record["status"]["reason"] == "oom"
    assert record["status"]["results"] == {}


def test_the_whole_output_is_logged_up_to_the_runs_end(repo: Path) -> None:
    """All a run prints, however fast, is in its log, to the last bytes it wrote as it ended."""
    record = run_json(repo, "calc", "--handler", "chatty", "-p", "lines=4000")
    log = show(repo, record_path(record["metadata"]["uid"], "log.txt"))
    assert "on standard error\n" in log
    printed = log.replace("on standard error\n", "")  # in no set order with the other stream
    assert [line.split()[1] for line in printed.splitlines() if line.startswith("line ")] == [
        f"{number:05d}" for number in range(4000)], "lines lost or out of order"
    assert printed.rstrip("\n").endswith("03999 ........................................\nthe end")
    assert record["status"]["log_truncated"] is False


def test_retries_keep_every_attempt(repo: Path) -> None:
    record = run_json(repo, "always-fails", expect=1)
    uid = record["metadata"]["uid"]
    assert record["metadata"]["job"] == "always-fails"
    assert record["metadata"]["attempt"] == 3
    assert record["status"]["state"] == "failed"
    files = git(repo, "ls-tree", "--name-only", f"{BRANCH}:runs/{uid[-2:]}/{uid}").split()
    assert sorted(files) == ["attempt-1.log", "attempt-1.yaml", "attempt-2.log",
                             "attempt-2.yaml", "log.txt", "run.yaml"]
    for attempt in (1, 2):
        earlier = yaml.safe_load(show(repo, record_path(uid, f"attempt-{attempt}.yaml")))
        assert earlier["metadata"]["uid"] == uid
        assert earlier["metadata"]["attempt"] == attempt
        assert earlier["status"]["state"] == "failed"
        assert "boom on purpose" in show(repo, record_path(uid, f"attempt-{attempt}.log"))


def test_secrets_are_masked(repo: Path, run_cli: RunCli) -> None:
    value = f"s3cr3t-{secrets.token_hex(8)}"
    done = runyard("run", "calc", "--handler", "secret", cwd=repo,
                   env={**os.environ, "RY_TEST_SECRET": value})
    assert done.returncode == 0, done.stderr
    assert value not in done.stdout + done.stderr
    uid = re.search(r"run (\w+) \(calc\): completed", done.stdout)
    assert uid is not None, done.stdout
    record = run_cli("runs", "show", uid[1], "--json", cwd=repo)
    assert json.loads(record.stdout)["status"]["results"] == {"length": len(value),
                                                              "in_environment": False}
    log = show(repo, record_path(uid[1], "log.txt"))
    assert "the secret is ***" in log
    # nowhere on the results branch: not in the record, not in any log
    found = subprocess.run(["git", "grep", "-F", value, BRANCH], cwd=repo,
                           capture_output=True, text=True)
    assert found.returncode == 1, found.stdout


def test_command_function(repo: Path) -> None:
    record = run_json(repo, "shout", "-p", "x=5")
    assert record["status"]["state"] == "completed"
    assert record["status"]["results"] == {"x": 1}
    assert record["spec"]["handler"] is None
    assert record["spec"]["command"][:2] == ["sh", "-c"]
    assert "x is 5" in show(repo, record_path(record["metadata"]["uid"], "log.txt"))


# --- inputs and artifacts ------------------------------------------------------------------


def test_inputs_of_every_kind(repo: Path, calc_run: dict[str, Any], tmp_path: Path) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"\x00bytes from outside the repo\xff")
    producer = run_json(repo, "calc", "-p", "x=11", "--backend", "local")
    record = run_json(
        repo, "calc", "--handler", "digests",
        "-i", "repo=data/table.csv",
        "-i", f"external=file://{outside}",
        "-i", "newest=artifact://report",
        "-i", f"pinned=artifact://report@{calc_run['metadata']['uid']}",
    )
    expected = {
        "repo": sha256((repo / "data" / "table.csv").read_bytes()),
        "external": sha256(outside.read_bytes()),
        "newest": sha256(b"x=11 y=2\n"),
        "pinned": sha256(b"x=3 y=2\n"),
    }
    assert artifact_hashes(producer)["report"] == expected["newest"]
    assert record["status"]["state"] == "completed"
    assert record["status"]["results"] == expected  # what the handler read
    inputs = record["spec"]["inputs"]
    assert {name: item["hash"] for name, item in inputs.items()} == expected
    assert inputs["pinned"]["uri"] == f"artifact://report@{calc_run['metadata']['uid']}"
    assert inputs["external"]["size"] == outside.stat().st_size


def test_http_input_is_fetched(repo: Path, tmp_path: Path) -> None:
    """An http:// input is fetched by the runner (here from a server on loopback)."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "table.csv").write_bytes(b"a,b\n1,2\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/table.csv"
        record = run_json(repo, "calc", "--handler", "digests", "-i", f"web={url}",
                          "--backend", "local")
    finally:
        server.shutdown()
    assert record["status"]["state"] == "completed"
    assert record["status"]["results"] == {"web": sha256(b"a,b\n1,2\n")}
    assert record["spec"]["inputs"]["web"] == {"uri": url, "hash": sha256(b"a,b\n1,2\n"),
                                               "size": 8}


def test_missing_input_fails_the_run(repo: Path) -> None:
    record = run_json(repo, "calc", "--handler", "digests", "-i", "gone=artifact://no-such-key",
                      "--backend", "local", expect=1)
    assert record["status"]["state"] == "failed"
    assert record["status"]["reason"] == "input"
    assert "no-such-key" in record["status"]["error"]


def test_runs_artifact_gives_the_bytes(repo: Path, calc_run: dict[str, Any], run_cli: RunCli,
                                       tmp_path: Path) -> None:
    out = tmp_path / "report.txt"
    uid = calc_run["metadata"]["uid"]
    done = run_cli("runs", "artifact", uid, "report", "-o", out, cwd=repo)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == b"x=3 y=2\n"
    to_stdout = run_cli("runs", "artifact", uid, "table", cwd=repo)
    assert to_stdout.stdout == "a b\n"
    missing = run_cli("runs", "artifact", uid, "nope", cwd=repo)
    assert missing.returncode == 1
    keys = ", ".join(sorted(artifact_hashes(calc_run)))
    assert missing.stderr.strip() == f"run {uid} has no artifact 'nope' (its artifacts: {keys})"
    for output, why in [(tmp_path, "Is a directory"), (out / "x", "Not a directory")]:
        refused = run_cli("runs", "artifact", uid, "report", "-o", output, cwd=repo)
        assert (refused.returncode, refused.stderr.strip()) == (
            1, f"cannot write artifact 'report' to {output}: {why}")


def test_runs_compare_marks_differing_params(repo: Path, calc_run: dict[str, Any],
                                             run_cli: RunCli) -> None:
    other = run_json(repo, "calc", "-p", "x=4", "--backend", "local")
    done = run_cli("runs", "compare", calc_run["metadata"]["uid"], other["metadata"]["uid"],
                   cwd=repo)
    assert done.returncode == 0, done.stderr
    rows = {}
    for line in done.stdout.splitlines():
        row = re.match(r"([* ]) (param|result) (\S+)\s+(\S+)\s+(\S+)\s*$", line)
        if row:
            rows[row[3]] = (row[1], row[4], row[5])
    assert rows["x"] == ("*", "3", "4"), done.stdout
    assert rows["seed"] == (" ", "7", "7"), done.stdout
    assert rows["sum"] == ("*", "5", "6"), done.stdout


def test_local_backend_matches_docker(repo: Path, calc_run: dict[str, Any]) -> None:
    local = run_json(repo, "calc", "-p", "x=3", "--backend", "local")
    assert local["spec"]["backend"] == "local"
    assert local["status"]["state"] == "completed"
    assert local["status"]["results"] == calc_run["status"]["results"]
    assert artifact_hashes(local) == artifact_hashes(calc_run)


# --- git: the user's checkout, concurrency, clones -----------------------------------------


def test_runs_leave_the_checkout_alone(tmp_path: Path) -> None:
    repo = new_project(tmp_path / "project")
    git(repo, "checkout", "--quiet", "-b", "feature")
    edit_file(repo / "data" / "table.csv", "3,4", "3,5")  # unstaged
    (repo / "notes.txt").write_text("staged\n")
    git(repo, "add", "notes.txt")
    before = tree_state(repo)
    record = run_json(repo, "calc", "-p", "x=2")
    local = run_json(repo, "calc", "-p", "x=2", "--backend", "local")
    assert before == tree_state(repo)
    assert record["spec"]["dirty"] is False and local["spec"]["dirty"] is False
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "feature"
    assert f"{BRANCH}" in git(repo, "branch", "--list", BRANCH)


def test_clean_checkout_stays_clean(tmp_path: Path) -> None:
    repo = new_project(tmp_path / "project")
    assert git(repo, "status", "--porcelain") == ""
    run_json(repo, "calc", "--backend", "local")
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"


def test_clean_checkout_has_no_untracked_state(tmp_path: Path) -> None:
    repo = new_project(tmp_path / "project")
    run_json(repo, "calc", "--backend", "local")
    assert git(repo, "status", "--porcelain") == ""


WRITER = """
import sys
from pathlib import Path
from runner.record.model import Artifact, Metadata, RunRecord, Spec, Status
from runner.record.results import ResultsBranch, new_uid

results = ResultsBranch(Path(sys.argv[1]), sys.argv[2])
for i in range(int(sys.argv[3])):
    uid = new_uid() + sys.argv[4]
    record = RunRecord(Metadata(uid=uid, name=f"w{i}", project="p"), Spec(),
                       Status(state="completed", artifacts=(Artifact(key="shared", hash=uid),)))
    results.write(record, f"log of {uid}\\n".encode())
    print(uid, flush=True)
"""


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    from runner.record.results import ResultsBranch

    repo = make_repo(tmp_path / "repo")
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(repo / ".git"), BRANCH,
                                 "50", tag], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env) for tag in ("a", "b")]
    written: list[str] = []
    for writer in writers:
        out, err = writer.communicate(timeout=110)
        assert writer.returncode == 0, err
        written += out.split()
    assert len(set(written)) == 100
    with closing(ResultsBranch(repo / ".git", BRANCH)) as results:
        assert sorted(results.uids()) == sorted(written)
        assert results.indexed()  # each writer's rows went in with its records
        assert sorted(row.uid for row in results.listing().rows) == sorted(written)
        for uid in written[::10]:
            assert results.log(uid) == f"log of {uid}\n".encode()
    history = git(repo, "rev-list", "--count", BRANCH).strip()
    assert history == "100"
    assert git(repo, "fsck", "--no-progress", "--no-dangling", "--strict").strip() == ""


def test_records_survive_a_single_branch_clone(repo: Path, calc_run: dict[str, Any],
                                               run_cli: RunCli, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", "--single-branch", "--branch", BRANCH, str(repo),
        str(clone))
    assert not (clone / "project.yaml").exists()
    listed = run_cli("runs", "list", "--all", "-C", clone, "--branch", BRANCH, "--limit", "1000",
                     "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    uids = [r["metadata"]["uid"] for r in json.loads(listed.stdout)]
    assert calc_run["metadata"]["uid"] in uids
    assert uids == [r["metadata"]["uid"] for r in _records(repo)]
    shown = run_cli("runs", "show", calc_run["metadata"]["uid"], "-C", clone,
                    "--branch", BRANCH, "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == calc_run
    logs = run_cli("runs", "logs", calc_run["metadata"]["uid"], "-C", clone, cwd=tmp_path)
    assert "calc with x=3 y=2" in logs.stdout, logs.stderr


# --- the Python API ------------------------------------------------------------------------


def test_python_api_run_function(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import runner

    project = runner.load_project(repo)
    assert project.name == NAME
    run = project.run_function("calc", params={"x": 6}, local=True)
    assert re.fullmatch(r"[0-9a-f]{16}", run.uid())
    assert run.state() == "completed"
    assert run.outputs["sum"] == 8
    assert run.output("product") == 12
    assert run.output("report") == "store://" + sha256(b"x=6 y=2\n")
    assert run.artifact("report").get() == b"x=6 y=2\n"
    assert run.artifact("report").url == f"artifact://report@{run.uid()}"
    record = run.to_dict()
    assert record["spec"]["backend"] == "local"
    assert yaml.safe_load(run.to_yaml()) == record
    assert json.loads(run.to_json()) == record
    capsys.readouterr()
    text = run.logs(watch=False)
    assert "calc with x=6 y=2" in text
    assert capsys.readouterr().out == text
    assert run.refresh() is run
    assert run.to_dict() == record
    assert yaml.safe_load(show(repo, record_path(run.uid()))) == record


def test_python_api_new_task(repo: Path) -> None:
    import runner

    project = runner.load_project(repo)
    task = runner.new_task(params={"x": 10, "y": 5})
    run = project.run_function("calc", task=task, local=True, watch=False)
    assert run.wait_for_completion(timeout=60).state() == "completed"
    assert run.outputs["sum"] == 15
    assert run.to_dict()["spec"]["params"]["override"] == {"x": 10, "y": 5}
    failed = project.run_function("calc", task=runner.new_task(handler="fail"), local=True)
    assert failed.state() == "failed"
    assert "boom on purpose" in failed.to_dict()["status"]["error"]


def test_python_api_background_run_that_cannot_start_fails(repo: Path) -> None:
    import runner

    project = runner.load_project(repo)
    run = project.run_function("no-such-function", local=True, watch=False)
    assert run.wait_for_completion(timeout=60).state() == "failed"
    status = run.to_dict()["status"]
    assert status["reason"] == "not_started"
    assert status["error"].startswith("no job or function named 'no-such-function'")
    assert run.to_dict()["metadata"]["name"] == "no-such-function"


def test_python_api_background_logs_as_far_as_they_got(repo: Path) -> None:
    import runner

    project = runner.load_project(repo)
    run = project.run_function("sleepy", local=True, watch=False)  # prints, then times out
    deadline, text = time.monotonic() + 30, ""
    while "going to sleep" not in text:
        assert time.monotonic() < deadline, "the log never showed what the run printed"
        time.sleep(0.1)
        text = run.logs(watch=False)
    assert run.state() == "running"
    assert run.wait_for_completion(timeout=60).state() == "failed"
    assert run.to_dict()["status"]["reason"] == "timeout"
    assert "going to sleep" in run.logs(watch=False)


def test_detached_run_logs_can_be_followed(repo: Path) -> None:
    """`run --detach` returns a uid at once; `runs logs --follow` prints the log as it
    grows and returns when the run is recorded."""
    started = runyard("run", "sleepy", "--backend", "local", "--detach", cwd=repo)
    assert started.returncode == 0, started.stderr
    uid = started.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{16}", uid)
    followed = runyard("runs", "logs", uid, "--follow", cwd=repo)
    assert followed.returncode == 0, followed.stderr
    assert "going to sleep" in followed.stdout
    record = yaml.safe_load(show(repo, record_path(uid)))
    assert record["status"]["reason"] == "timeout"


# --- what is refused before anything runs ---------------------------------------------


def test_an_unknown_target_is_refused_before_any_image_is_built(tmp_path: Path) -> None:
    """A misspelt job fails at once with the nearest name: no image, no record."""
    name = f"rytest-{secrets.token_hex(3)}"
    project = committed_copy(PROJECT, tmp_path / "project", ("rytest", name), "a fresh project")
    done = runyard("run", "cacl", cwd=project)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().startswith("no job or function named 'cacl'; did you mean 'calc'?")
    assert "Step 1/" not in done.stdout  # nothing was built
    images = subprocess.run(["docker", "image", "ls", "-q", f"runyard/{name}"],
                            capture_output=True, text=True, check=True)
    assert images.stdout == ""
    assert results_tip(project) == ""


@pytest.mark.parametrize("args, code, message", [
    (["calc", "-p", "x"], 2, "'x' is not NAME=VALUE"),
    (["calc", "--selector", "best"], 2, "'best' is not min.KEY or max.KEY"),
    (["calc", "-p", "x=[1,"], 2, "'x=[1,': '[1,' is not a YAML value"),
    (["cacl"], 1, "no job or function named 'cacl'; did you mean 'calc'?"),
    (["calc", "--handler", "nope"], 1, "handler 'nope' is not defined in src/handlers.py"),
    (["calc", "--revision", "HEAD", "--local-changes"], 2,
     "--revision runs a commit and --local-changes the working tree: give one of them"),
])
def test_a_detached_run_checks_its_arguments_before_it_detaches(
        repo: Path, args: list[str], code: int, message: str) -> None:
    """A mistake fails the command itself, not a background process nobody watches."""
    live = repo / ".runyard" / "live"
    before = sorted(live.glob("*.detached")) if live.is_dir() else []
    done = runyard("run", *args, "--backend", "local", "--detach", cwd=repo)
    assert done.returncode == code, done.stdout + done.stderr
    assert message in done.stderr
    assert done.stdout == ""  # no uid: nothing started
    assert (sorted(live.glob("*.detached")) if live.is_dir() else []) == before


@pytest.mark.parametrize("target, handler, why", [
    ("calc", "nope", "handler 'nope' is not defined in src/handlers.py"),
    ("always-fails", "calcc", "handler 'calcc' is not defined in src/handlers.py"),
    ("calc", "handlers.calc", "handler 'handlers.calc': src/handlers.py is a file, so name a "
                              "function in it"),
])
def test_a_handler_the_code_lacks_is_refused_before_the_run(
        repo: Path, target: str, handler: str, why: str) -> None:
    """As `validate` says it of a job's handler, and no failed run is recorded."""
    before = results_tip(repo)
    done = runyard("run", target, "--handler", handler, "--backend", "local", cwd=repo)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip() == f"cannot run {target!r} with handler {handler!r}: {why}"
    assert results_tip(repo) == before


@pytest.mark.parametrize("uri, why", [
    ("data/tabel.csv", "'data/tabel.csv' does not exist in the project"),
    ("./data/table.csv", "'./data/table.csv' is not in normal form"),
    ("data", "'data' is a folder, not a file"),
    ("ftp://host/table.csv", "'ftp://host/table.csv': runyard cannot read ftp:// inputs"),
    ("step://prep/table", "step:// inputs are only for pipeline steps"),
])
def test_an_input_that_cannot_be_had_is_refused_before_the_run(repo: Path, uri: str,
                                                               why: str) -> None:
    """As `validate` says it of a job's input; the run is not started and not recorded
    (a record of it held no trace of the input asked for)."""
    before = results_tip(repo)
    for detach in ([], ["--detach"]):
        done = runyard("run", "calc", "-i", f"table={uri}", "--backend", "local", *detach,
                       cwd=repo)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.startswith(f"input table: {why}")
        assert done.stdout == ""
    assert results_tip(repo) == before


@pytest.mark.parametrize("args, warned", [
    (["-p", "z=3"], "z"),
    (["--hyper", "yy=1,2"], "yy"),
    (["-p", "x=3", "-p", "seed=8"], None),  # an argument of calc, a param of the project
    (["--handler", "digests", "-p", "x=3"], "x"),
])
def test_a_param_the_handler_does_not_take_is_warned_of(repo: Path, args: list[str],
                                                        warned: str | None) -> None:
    """A misspelt -p would be passed over by the handler: the run goes on, said once."""
    done = runyard("run", "calc", *args, "--backend", "local", cwd=repo)
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    if warned is None:
        assert warnings == []
        return
    handler, takes = ("digests", "no params") if "digests" in args else ("calc", "x, y")
    assert warnings == [
        f"warning: param {warned!r}: handler {handler!r} takes no argument of that name (it "
        f"takes: {takes}); the run has it only through context.get_param({warned!r})"]


@pytest.mark.parametrize("args, message", [
    (["-p", "x=[1,"], "Invalid value for --param: 'x=[1,': '[1,' is not a YAML value"),
    (["-p", "x=a: b: c"], "'a: b: c' is not a YAML value (mapping values are not allowed"),
    (["--hyper", "x=1,[2"], "Invalid value for --hyper: 'x=1,[2': '[2' is not a YAML value"),
])
def test_a_value_that_is_not_yaml_is_a_usage_error(repo: Path, args: list[str],
                                                   message: str) -> None:
    done = runyard("run", "calc", *args, "--backend", "local", cwd=repo)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "internal error" not in done.stderr


def test_containers_are_hardened(repo: Path) -> None:
    """Not root, no capabilities, no new privileges, read-only code, no Docker socket."""
    record = run_json(repo, "calc", "--handler", "whoami")
    assert record["status"]["results"] == {
        "uid": 65534, "cap_eff": "0000000000000000", "no_new_privs": "1",
        "code_writable": False, "work_writable": True, "docker_socket": False,
    }
