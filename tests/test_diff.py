"""`runyard diff` and `runyard runs show`, end to end: a real git repository with three
revisions of a small project, each run in Docker.

Revision 1 runs `tune` (two trials, depth 1 and 2) and `once`; revision 2 changes the
param `scale` from 1 to 2 in both jobs and runs them again; revision 3 changes the
input data and the code, and runs `tune` only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from runner.record.results import ResultsBranch, run_folder
from tests.helpers import CHECKOUT, commit_all, committed_copy, edit_file

pytestmark = pytest.mark.docker

PROJECT = CHECKOUT / "tests" / "projects" / "diff"
ESCAPE = re.compile(r"\x1b\[")
Record = dict[str, Any]


def runyard(repo: Path, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=repo, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def refused(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stderr


def run(repo: Path, job: str) -> Record:
    record: Record = json.loads(ok(runyard(repo, "run", job, "--json")))
    return record


class History(NamedTuple):
    repo: Path
    revisions: tuple[str, str, str]
    tune: tuple[Record, Record, Record]
    once: tuple[Record, Record]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    repo = committed_copy(PROJECT, tmp_path_factory.mktemp("diff") / "project",
                          ("rydiff", "rydiffe2e"), "the diff test project")
    first = _head(repo)
    tune1, once1 = run(repo, "tune"), run(repo, "once")
    for job in ("tune", "once"):
        edit_file(repo / "jobs" / f"{job}.yaml", "params: {scale: 1}", "params: {scale: 2}")
    second = commit_all(repo, "scale 2")
    tune2, once2 = run(repo, "tune"), run(repo, "once")
    (repo / "data" / "points.csv").write_text("x,y\n1,2\n3,4\n5,6\n7,8\n")
    edit_file(repo / "src" / "fit.py", '"rows": rows}', '"rows": rows, "version": 2}')
    third = commit_all(repo, "more data, new code")
    tune3 = run(repo, "tune")
    yield History(repo, (first, second, third), (tune1, tune2, tune3), (once1, once2))
    tags = {r["spec"]["image"] for r in (tune1, once1) if r["spec"].get("image")}
    for tag in tags:  # untag the module's image; its layers stay cached
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


def _head(repo: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_a_param_change_is_named_and_trials_are_joined(history: History) -> None:
    first, second, _ = history.revisions
    out = ok(runyard(history.repo, "diff", f"{first[:8]}..{second[:8]}"))
    assert out.startswith(f"diff {first[:12]} (A) .. {second[:12]} (B)")
    tune = out.split("job tune:")[1]
    assert "changed params: scale 1 -> 2" in tune
    assert "input" not in tune and "code" not in tune and "environment" not in tune
    # depth 1: accuracy 0.1*1*1 + 2/100 = 0.12 -> 0.1*1*2 + 0.02 = 0.22, better by the selector
    assert re.search(r"trial depth=1\s+accuracy\s+0\.12\s+0\.22\s+\+0\.1\s+\+83\.33%\s+better", tune)
    assert re.search(r"best #2\s+accuracy\s+0\.22\s+0\.42\s+\+0\.2\s+\+90\.91%\s+better", tune)
    once = out.split("job once:")[1].split("job tune:")[0]
    assert re.search(r"run\s+model\s+v1\s+v2\s+changed", once)
    assert not ESCAPE.search(out)  # not a terminal: plain


def test_default_is_the_previous_revision_with_results_against_head(history: History) -> None:
    _, second, third = history.revisions
    out = ok(runyard(history.repo, "diff", "--job", "tune"))
    assert out.startswith(f"diff {second[:12]} (A) .. {third[:12]} (B)")
    assert "changed input: points: data/points.csv sha256:" in out
    assert "changed code: src/fit.py" in out and "changed params" not in out
    assert re.search(r"trial depth=2\s+version\s+-\s+2", out)  # a result new at B
    assert "job once" not in out


def test_a_job_at_one_revision_only_is_listed(history: History) -> None:
    _, second, third = history.revisions
    out = ok(runyard(history.repo, "diff", f"{second}..{third}", "--json"))
    once = next(job for job in json.loads(out)["jobs"] if job["job"] == "once")
    assert once["new"] is None and once["old"]["uid"] == history.once[1]["metadata"]["uid"]
    assert [pair["old_uid"] for pair in once["only_old"]] == [history.once[1]["metadata"]["uid"]]


def test_markdown_for_a_pull_request(history: History) -> None:
    first, second, _ = history.revisions
    out = ok(runyard(history.repo, "diff", f"{first}..{second}", "--job", "tune", "--md"))
    assert out.startswith(f"### runyard diff `{first[:12]}` .. `{second[:12]}`")
    assert "- changed params: scale 1 -&gt; 2" in out
    assert "| run | result | A | B | change | % | |" in out
    assert "| trial depth=1 | accuracy | 0.12 | 0.22 | +0.1 | +83.33% | 🟢 better |" in out
    assert "| trial depth=1 | loss | 1 | 0.5 | -0.5 | -50.00% |  |" in out


def test_fail_if_exits_1_when_a_change_crosses_the_line(history: History) -> None:
    first, second, _ = history.revisions
    span = f"{first}..{second}"
    assert ok(runyard(history.repo, "diff", span, "--fail-if", "accuracy < -0.01"))
    crossed = runyard(history.repo, "diff", span, "--fail-if", "loss < -0.4")
    assert "trial depth=1" in crossed.stdout  # the diff is printed all the same
    message = refused(crossed)
    assert "--fail-if 'loss < -0.4' crossed: job once run: loss -0.5" in message
    assert "job tune trial depth=1: loss -0.5" in message
    assert "depth=2" not in message  # 0.5 -> 0.25: -0.25 only
    # --better turns the colour and the verdict, not the gate
    out = ok(runyard(history.repo, "diff", span, "--job", "tune", "--better", "min.accuracy"))
    assert re.search(r"trial depth=1\s+accuracy.*\+83\.33%\s+worse", out)


def test_bad_input_is_refused_with_a_clear_message(history: History) -> None:
    first, second, third = history.revisions
    repo = history.repo
    assert "no revision 'no-such-rev'" in refused(runyard(repo, "diff", "no-such-rev..HEAD"))
    assert "job 'nope' has no results" in refused(runyard(repo, "diff", "--job", "nope"))
    assert f"job 'once' has no results at {third[:12]} or at {third[:12]}" in refused(
        runyard(repo, "diff", f"{third}..{third}", "--job", "once"))
    assert "no run compared has model as a number" in refused(
        runyard(repo, "diff", f"{first}..{second}", "--fail-if", "model < 0"))
    assert "--fail-if 'accuracy <<'" in refused(runyard(repo, "diff", "--fail-if", "accuracy <<"))
    assert "write max.RESULT or min.RESULT" in refused(runyard(repo, "diff", "--better", "acc"))
    assert "no revision before" in refused(runyard(repo, "diff", f"..{first}"))


def test_colours_only_on_a_terminal(history: History) -> None:
    import fcntl
    import pty
    import struct
    import termios

    first, second, _ = history.revisions
    base = {key: value for key, value in os.environ.items() if key != "NO_COLOR"}

    def on_a_terminal(env: dict[str, str]) -> str:
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        with os.fdopen(leader, "rb", buffering=0) as reader:
            done = subprocess.run([sys.executable, "-m", "runner", "diff", f"{first}..{second}",
                                   "--job", "tune"], cwd=history.repo, stdout=follower,
                                  stderr=subprocess.PIPE, timeout=120,
                                  env={**base, "TERM": "xterm-256color", **env})
            os.close(follower)
            assert done.returncode == 0, done.stderr
            return reader.read(1 << 20).decode()

    coloured = on_a_terminal({})
    assert "\x1b[32m" in coloured and "better" in coloured  # green
    assert not ESCAPE.search(on_a_terminal({"NO_COLOR": "1"}))


def test_records_from_before_spec_code_have_their_code_read_from_git(history: History,
                                                                     tmp_path: Path) -> None:
    copy = tmp_path / "project"
    shutil.copytree(history.repo, copy, symlinks=True)
    results = ResultsBranch(copy / ".git", "runyard/results")
    try:
        for record in list(results.records()):  # as an older runyard wrote them
            results.write(replace(record, spec=replace(record.spec, code={})))
        assert not any(record.spec.code for record in results.records())
    finally:
        results.close()
    _, second, third = history.revisions
    found = json.loads(ok(runyard(copy, "diff", f"{second}..{third}", "--job", "tune", "--json")))
    assert {"what": "code", "where": "", "detail": "src/fit.py"} in found["jobs"][0]["causes"]


# --- runs show ---------------------------------------------------------------------------------

def test_runs_show_says_exactly_what_ran(history: History) -> None:
    parent = history.tune[1]
    out = ok(runyard(history.repo, "runs", "show", parent["metadata"]["uid"][:10]))
    revision = history.revisions[1]
    tree = subprocess.run(["git", "rev-parse", f"{revision}^{{tree}}"], cwd=history.repo,
                          capture_output=True, text=True, check=True).stdout.strip()
    assert re.search(rf"^  revision\s+{revision}$", out, re.MULTILINE)
    assert re.search(rf"^  tree\s+{tree}$", out, re.MULTILINE)
    assert re.search(r"  trigger\s+manual by \S+", out)
    assert re.search(r"  host\s+\S+ \(runner \S+/\d+:\d+\)", out)
    assert '  hyper' in out and '"selector": "max.accuracy"' in out
    assert re.search(r'^params:\n  project\s+\{"seed": 7\}\n  job\s+\{"scale": 2\}\n'
                     r'  resolved\s+\{"seed": 7, "scale": 2\}$', out, re.MULTILINE)
    trials = out.split("trials:\n")[1]
    for trial in parent["status"]["trials"]:  # each child's uid in the trial table
        assert re.search(rf"\b{trial['iteration']}\s+completed\s+{trial['uid']}\b", trials)


def test_runs_show_of_a_trial_has_its_image_code_inputs_and_trial_params(history: History) -> None:
    trial = history.tune[1]["status"]["trials"][0]
    out = ok(runyard(history.repo, "runs", "show", trial["uid"]))
    record = json.loads(ok(runyard(history.repo, "runs", "show", trial["uid"], "--json")))
    spec = record["spec"]
    assert spec["params"]["trial"] == trial["params"] and "depth" not in spec["params"]["override"]
    assert spec["tree"] and spec["trigger"]["by"]
    assert set(spec["code"]) == {"functions/fit.yaml", "src/fit.py"}
    fields = dict(re.findall(r"^  (\w[\w ]*?)  +(.+)$", out, re.MULTILINE))
    assert fields["function"] == "fit, handler fit"
    assert fields["image"] == f"{spec['image']} ({spec['image_id']})"
    assert fields["env hash"] == spec["env_hash"]
    assert f"src/fit.py {spec['code']['src/fit.py'][:12]}" in fields["code"]
    assert fields["points"] == f"data/points.csv  {spec['inputs']['points']['hash']}  12 bytes"
    assert fields["trial"] == json.dumps(trial["params"])
    assert fields["parent"] == f"{history.tune[1]['metadata']['uid']} (iteration 1)"


def test_runs_show_of_a_broken_record_exits_1_saying_what_is_wrong(history: History,
                                                                   tmp_path: Path) -> None:
    copy = tmp_path / "project"
    shutil.copytree(history.repo, copy, symlinks=True)
    uid = history.once[0]["metadata"]["uid"]
    results = ResultsBranch(copy / ".git", "runyard/results")
    try:
        raw = results.store.read(f"{run_folder(uid)}/run.yaml") or b""
        cut = raw[:raw.index(b"spec:")]  # truncated: no spec, no status
        results.store.commit({f"{run_folder(uid)}/run.yaml": cut}, "a truncated record")
    finally:
        results.close()
    message = refused(runyard(copy, "runs", "show", uid[:9]))
    assert message.strip() == f"the record of run {uid} is broken: spec is missing"
    # the diff reads the other runs and says which one it left out
    first, second, _ = history.revisions
    done = runyard(copy, "diff", f"{first}..{second}")
    assert ok(done) and "job tune" in done.stdout
    assert f"warning: left out: the record of run {uid} is broken" in done.stderr
