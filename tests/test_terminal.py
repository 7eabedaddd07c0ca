"""What a record holds reaches a terminal shown, never obeyed: a run's results, params,
errors and log may carry escape sequences (set the clipboard, clear or rewrite the
screen, retitle the window), carriage returns and bidirectional overrides."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.views.terminal import printable
from tests.helpers import commit_all, make_repo, on_a_terminal

CLIPBOARD = "\x1b]52;c;cm0gLXJmIC8K\x07"  # OSC 52: the terminal's clipboard becomes "rm -rf /"
HOSTILE = [CLIPBOARD, "\x1b[2J", "\x1b[1A", "\x1b]0;title\x1b\\", "\r", "\x08", "\x9b2J",
           "\u202e", "\u2066", "\x00", "\x7f"]
BAD = " ".join(HOSTILE)
GREEN = "\x1b[32mgreen\x1b[0m"
COLOUR = re.compile(r"\x1b\[[0-9;]*m")
CONTROLS = {char for char in "".join(HOSTILE) if unicodedata.category(char) in ("Cc", "Cf")}


def obeyed(text: str, *, colours: bool = False) -> list[str]:
    """The characters of `text` a terminal would act on, but colours where `colours`."""
    return sorted(set(COLOUR.sub("", text) if colours else text) & CONTROLS)


def test_every_control_is_written_out_and_text_is_kept() -> None:
    shown = printable(f"{BAD}\tcafé 中文\nnext")
    assert obeyed(shown) == []
    assert "\\x1b]52;c;cm0gLXJmIC8K\\x07" in shown and "\\r" in shown and "\\u202e" in shown
    assert "\tcafé 中文\nnext" in shown  # tab, newline and any printable text as they are
    assert printable(shown) == shown  # what is written out is not written out again


def test_a_log_keeps_its_colours_and_nothing_else() -> None:
    shown = printable(f"{GREEN} {BAD} \x1b[1;31;4mbold\x1b[m", colours=True)
    assert GREEN in shown and "\x1b[1;31;4mbold\x1b[m" in shown
    assert obeyed(shown.replace("\x1b[1;31;4m", "").replace("\x1b[m", ""), colours=True) == []
    assert "\\x1b[2J" in shown and "\\x1b]0;title" in shown


HANDLER = f'''# what a pushed file may hold: {CLIPBOARD}\x1b[2J
BAD = {BAD!r}


def main(context):
    print({GREEN!r} + " " + BAD, flush=True)
    context.log_result("said", "ok " + BAD)
    context.log_artifact("note", body=BAD)
    return {{"note": BAD}}


def fail():
    raise ValueError("broken " + BAD)
'''


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = make_repo(tmp_path_factory.mktemp("terminal") / "project")
    (root / "src").mkdir()
    (root / "src" / "say.py").write_text(HANDLER)
    (root / "project.yaml").write_text("apiVersion: runyard/v1\nkind: project\nname: ryterminal\n")
    (root / "functions").mkdir()
    (root / "functions" / "say.yaml").write_text(
        "apiVersion: runyard/v1\nkind: function\nname: say\ncode: src/say.py\nhandler: main\n")
    commit_all(root, f"a project whose runs say hostile things {CLIPBOARD}")
    yield root


def runyard(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=repo, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def ran(repo: Path) -> dict[str, str]:
    done = runyard(repo, "run", "say", "--backend", "local")
    assert done.returncode == 0, done.stdout + done.stderr
    listed = runyard(repo, "runs", "list", "--json")
    uid: str = json.loads(listed.stdout)[0]["metadata"]["uid"]
    failed = runyard(repo, "run", "say", "--backend", "local", "--handler", "fail")
    assert failed.returncode == 1
    return {"uid": uid, "run": done.stdout + done.stderr, "failed": failed.stdout + failed.stderr}


def test_a_runs_own_output_writes_out_what_its_log_and_record_say(ran: dict[str, str]) -> None:
    out = ran["run"]
    assert "say | green \\x1b]52;c;cm0gLXJmIC8K\\x07" in out  # (click drops colours when piped)
    assert "note = \\x1b]52;c;cm0gLXJmIC8K\\x07" in out
    assert obeyed(out) == []
    assert obeyed(ran["failed"]) == [] and "ValueError: broken \\x1b]52" in ran["failed"]


@pytest.mark.parametrize("args", [["runs", "list", "--all"], ["runs", "show", "UID"],
                                  ["runs", "compare", "UID", "UID"]])
def test_record_views_write_out_what_a_terminal_would_obey(repo: Path, ran: dict[str, str],
                                                           args: list[str]) -> None:
    args = [ran["uid"] if arg == "UID" else arg for arg in args]
    piped, shown = runyard(repo, *args), on_a_terminal(*args, cwd=repo)
    assert piped.returncode == 0, piped.stderr
    assert obeyed(piped.stdout) == [] and "\\x1b" in piped.stdout
    assert obeyed(shown, colours=True) == [] and "\\x1b" in shown  # (its own colours only)


def test_a_log_on_a_terminal_keeps_colours_and_piped_is_as_written(repo: Path,
                                                                    ran: dict[str, str]) -> None:
    shown = on_a_terminal("runs", "logs", ran["uid"], cwd=repo)
    assert GREEN in shown and "\\x1b]52;c;cm0gLXJmIC8K\\x07" in shown
    assert obeyed(shown, colours=True) == []
    piped = subprocess.run([sys.executable, "-m", "runner", "runs", "logs", ran["uid"]],
                           cwd=repo, capture_output=True, timeout=120)
    assert (GREEN + " " + BAD).encode() in piped.stdout  # to a file: the bytes as the run wrote them


@pytest.mark.parametrize("args", [["functions", "show", "say"], ["runs", "show", "UID", "--code"],
                                  ["functions", "history", "say"], ["runs", "artifact", "UID", "note"]])
def test_a_pushed_projects_files_and_artifacts_on_a_terminal_are_shown_not_obeyed(
        repo: Path, ran: dict[str, str], args: list[str]) -> None:
    shown = on_a_terminal(*[ran["uid"] if arg == "UID" else arg for arg in args], cwd=repo)
    assert obeyed(shown, colours=True) == [] and "\\x1b]52;c;cm0gLXJmIC8K\\x07" in shown


def test_a_functions_code_and_an_artifact_piped_are_as_committed(repo: Path,
                                                                 ran: dict[str, str]) -> None:
    assert CLIPBOARD + "\x1b[2J" in runyard(repo, "functions", "show", "say").stdout
    artifact = subprocess.run([sys.executable, "-m", "runner", "runs", "artifact", ran["uid"], "note"],
                              cwd=repo, capture_output=True, timeout=120)
    assert artifact.stdout == BAD.encode()


def test_status_writes_out_a_pushed_path(tmp_path: Path) -> None:
    """`status` says why a job is stale with the paths a push changed: a file's name may
    hold an escape sequence."""
    root = make_repo(tmp_path / "project")
    files = {"project.yaml": "apiVersion: runyard/v1\nkind: project\nname: rystatus\n",
             "src/say.py": "def main(context):\n    return {'x': 1}\n",
             "functions/say.yaml": "apiVersion: runyard/v1\nkind: function\nname: say\n"
                                   "code: src/say.py\nhandler: main\n",
             "jobs/hello.yaml": "apiVersion: runyard/v1\nkind: job\nname: hello\n"
                                "run: {function: say}\ntriggers: {push: {paths: ['data/**']}}\n"}
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    commit_all(root, "a job")
    assert runyard(root, "run", "hello", "--backend", "local").returncode == 0
    (root / "data").mkdir()
    (root / "data" / f"x{CLIPBOARD}y.csv").write_text("")
    commit_all(root, "a file whose name sets the clipboard")
    said = runyard(root, "status")
    assert said.returncode == 0, said.stderr
    assert "paths matched (data/x\\x1b]52;c;cm0gLXJmIC8K\\x07y.csv)" in said.stdout
    assert obeyed(said.stdout) == []
