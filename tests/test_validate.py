"""`runyard validate` and `runyard schema`, end to end: real files, real git, a real CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from runner.errors import ProjectInvalid
from runner.project.loader import load_project
from runner.project.model import Project
from runner.project.source import DirectorySource, SourceError, open_source
from tests.helpers import (
    SAMPLE_PROJECT,
    RunCli,
    bare_clone,
    commit_all,
    copy_project,
    edit_file,
    git,
    make_repo,
)

CORPUS_BASE = Path(__file__).parent / "corpus" / "base"
OK_SAMPLE = "ok: project 'churn': 3 functions, 1 pipeline, 3 jobs"
PROBLEM_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<message>.+)$")


def expect(done: subprocess.CompletedProcess[str], code: int) -> None:
    """The command exited with `code`, and as a user's outcome, never as a crash."""
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert "Traceback" not in output
    assert "internal error" not in output


def break_job_function(project: Path, name: str = "trainer-v2") -> None:
    """Make jobs/train.yaml name a function that does not exist (line 7, column 17)."""
    edit_file(project / "jobs" / "train.yaml", "function: trainer,", f"function: {name},")


MISSING_FUNCTION = "jobs/train.yaml:7:17: no function named 'trainer-v2'"


# the sample project, valid


def test_the_sample_project_validates(run_cli: RunCli) -> None:
    done = run_cli("validate", SAMPLE_PROJECT)
    expect(done, 0)
    assert done.stdout.splitlines() == [OK_SAMPLE]
    # what a runner on push withholds by default: said, but the project is valid
    assert done.stderr.splitlines() == [
        "warning: sample-project/project.yaml:14:11: secret WAREHOUSE_TOKEN is withheld from "
        "runs started by a push unless the runner's operator allows it "
        "(--allow-secret WAREHOUSE_TOKEN)"]


def test_validate_without_paths_checks_the_project_around_the_current_folder(
    run_cli: RunCli, sample_project: Path
) -> None:
    done = run_cli("validate", cwd=sample_project / "src" / "churn")
    expect(done, 0)
    assert done.stdout.splitlines() == [OK_SAMPLE]


def test_json_report_of_a_valid_project(run_cli: RunCli, sample_project: Path) -> None:
    done = run_cli("validate", "--json", sample_project)
    expect(done, 0)
    report = json.loads(done.stdout)
    warnings = report.pop("warnings")
    assert report == {"valid": True, "projects": ["churn"], "problems": []}
    assert [(w["line"], w["message"].split(" is ")[0]) for w in warnings] == [
        (14, "secret WAREHOUSE_TOKEN")]


def test_json_report_of_an_invalid_project(run_cli: RunCli, sample_project: Path) -> None:
    break_job_function(sample_project)
    done = run_cli("validate", "--json", cwd=sample_project)
    expect(done, 1)
    report = json.loads(done.stdout)  # stdout holds the JSON document and nothing else
    assert report["valid"] is False
    assert report["projects"] == []
    assert report["problems"] == [
        {
            "file": "jobs/train.yaml",
            "line": 7,
            "col": 17,
            "message": "no function named 'trainer-v2'; did you mean 'trainer'? "
                       "(known: data-prep, report, trainer)",
        }
    ]


# several problems at once


def test_every_error_is_reported_at_once_sorted_with_a_summary_last(
    run_cli: RunCli, sample_project: Path
) -> None:
    edit_file(sample_project / "functions" / "trainer.yaml", "handler: train\n", "handler: fit\n")
    edit_file(sample_project / "jobs" / "nightly.yaml", '"0 3 * * *"', '"0 99 * * *"')
    edit_file(sample_project / "jobs" / "tune.yaml", "strategy: grid", "strategy: sideways")
    edit_file(sample_project / "pipelines" / "training.yaml",
              "step://evaluate/metrics", "step://evaluate/nope")

    done = run_cli("validate", cwd=sample_project)

    expect(done, 1)
    assert done.stdout == ""
    *problems, summary = done.stderr.splitlines()
    assert summary == "4 errors in 4 files"
    parsed = [PROBLEM_LINE.match(line) for line in problems]
    assert all(parsed), problems
    places = [(m["file"], int(m["line"]), int(m["col"])) for m in parsed if m]
    assert places == sorted(places)
    assert places == [
        ("functions/trainer.yaml", 7, 10),
        ("jobs/nightly.yaml", 10, 13),
        ("jobs/tune.yaml", 9, 13),
        ("pipelines/training.yaml", 26, 23),
    ]
    messages = [m["message"] for m in parsed if m]
    assert "handler 'fit' is not defined" in messages[0]
    assert "'0 99 * * *' is not valid cron" in messages[1]
    assert "'sideways' is not one of" in messages[2]
    assert "declares no output 'nope'" in messages[3]


def test_one_error_has_a_singular_summary(run_cli: RunCli, sample_project: Path) -> None:
    break_job_function(sample_project)
    done = run_cli("validate", cwd=sample_project)
    expect(done, 1)
    assert done.stderr.splitlines() == [
        f"{MISSING_FUNCTION}; did you mean 'trainer'? (known: data-prep, report, trainer)",
        "1 error in 1 file",
    ]


def test_problems_name_files_relative_to_the_current_folder(
    run_cli: RunCli, sample_project: Path
) -> None:
    break_job_function(sample_project)
    done = run_cli("validate", "sample-project", cwd=sample_project.parent)
    expect(done, 1)
    assert done.stderr.startswith(f"sample-project/{MISSING_FUNCTION}")
    assert (sample_project.parent / done.stderr.split(":", 1)[0]).is_file()


# file arguments, as pre-commit passes them


def test_files_check_their_whole_project_once(run_cli: RunCli, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    copy_project(SAMPLE_PROJECT, repo / "churn")
    (repo / "README.md").write_text("# not part of any project\n")
    (tmp_path / "elsewhere.txt").write_text("outside everything\n")

    done = run_cli(
        "validate", "churn/jobs/train.yaml", "churn/src/prep.py", "README.md",
        tmp_path / "elsewhere.txt", cwd=repo,
    )

    expect(done, 0)
    assert done.stdout.splitlines() == [OK_SAMPLE]


def test_files_outside_every_project_check_nothing(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# no project here\n")
    done = run_cli("validate", "README.md", cwd=tmp_path)
    expect(done, 0)  # pre-commit passes every file of a commit
    assert done.stdout == ""
    # but a person is told, not left with no output at all
    assert done.stderr == "nothing to check: no runyard project holds README.md\n"


def test_a_file_argument_finds_errors_in_other_files_of_its_project(
    run_cli: RunCli, sample_project: Path
) -> None:
    break_job_function(sample_project)
    done = run_cli("validate", "src/prep.py", cwd=sample_project)
    expect(done, 1)
    assert done.stderr.startswith(MISSING_FUNCTION)


def test_a_job_file_alone_sees_the_function_deleted_in_another_file(
    run_cli: RunCli, sample_project: Path
) -> None:
    (sample_project / "functions" / "trainer.yaml").unlink()
    done = run_cli("validate", "jobs/train.yaml", cwd=sample_project)
    expect(done, 1)
    lines = done.stderr.splitlines()
    assert "jobs/train.yaml:7:17: no function named 'trainer' (known: data-prep, report)" in lines
    assert any(line.startswith("jobs/nightly.yaml:") for line in lines)
    assert any(line.startswith("pipelines/training.yaml:") for line in lines)
    assert lines[-1] == "4 errors in 3 files"


# --revision: what is committed, not what is on disk


def test_revision_ignores_uncommitted_changes(run_cli: RunCli, sample_repo: Path) -> None:
    break_job_function(sample_repo)

    at_head = run_cli("validate", "--revision", "HEAD", cwd=sample_repo)
    on_disk = run_cli("validate", cwd=sample_repo)

    expect(at_head, 0)
    assert at_head.stdout.splitlines() == [OK_SAMPLE]
    expect(on_disk, 1)
    assert on_disk.stderr.startswith(MISSING_FUNCTION)


def test_revision_sees_a_committed_breakage_and_the_revision_before_it(
    run_cli: RunCli, sample_repo: Path
) -> None:
    good = git(sample_repo, "rev-parse", "HEAD").strip()
    break_job_function(sample_repo)
    bad = commit_all(sample_repo, "name a function that is not there")
    git(sample_repo, "checkout", "--quiet", good)  # the working tree is valid again

    expect(run_cli("validate", "-r", good, cwd=sample_repo), 0)
    at_bad = run_cli("validate", "--revision", bad[:10], cwd=sample_repo)
    expect(at_bad, 1)
    assert at_bad.stderr.startswith(MISSING_FUNCTION)
    expect(run_cli("validate", cwd=sample_repo), 0)


def test_revision_in_a_bare_repository(run_cli: RunCli, sample_repo: Path, tmp_path: Path) -> None:
    bare = bare_clone(sample_repo, tmp_path / "bare.git")
    break_job_function(sample_repo)
    bad = commit_all(sample_repo, "name a function that is not there")
    git(sample_repo, "push", "--quiet", str(bare), "HEAD:refs/heads/broken")
    assert not (bare / "project.yaml").exists()

    good_run = run_cli("validate", "--revision", "main", bare)
    # as in a post-receive hook: the current folder is the bare repository
    hook_run = run_cli("validate", "--revision", "main", cwd=bare)
    bad_run = run_cli("validate", "--revision", bad, cwd=bare)
    by_branch = run_cli("validate", "--json", "--revision", "broken", bare)

    expect(good_run, 0)
    assert good_run.stdout.splitlines() == [OK_SAMPLE]
    expect(hook_run, 0)
    assert hook_run.stdout.splitlines() == [OK_SAMPLE]
    expect(bad_run, 1)
    assert bad_run.stderr.startswith(MISSING_FUNCTION)
    expect(by_branch, 1)
    assert [p["file"] for p in json.loads(by_branch.stdout)["problems"]] == ["jobs/train.yaml"]


def test_revision_of_a_project_in_a_sub_folder_of_a_bare_repository(
    run_cli: RunCli, tmp_path: Path
) -> None:
    work = make_repo(tmp_path / "work")
    copy_project(SAMPLE_PROJECT, work / "projects" / "churn")
    (work / "README.md").write_text("# several things live here\n")
    good = commit_all(work, "the project, in a sub-folder")
    break_job_function(work / "projects" / "churn")
    bad = commit_all(work, "name a function that is not there")
    bare = bare_clone(work, tmp_path / "bare.git")

    at_good = run_cli("validate", "--revision", good, bare / "projects" / "churn")
    at_bad = run_cli("validate", "--revision", bad, "projects/churn", cwd=bare)
    at_top = run_cli("validate", "--revision", good, cwd=bare)
    from_work = run_cli("validate", "--revision", good, "projects/churn/jobs/train.yaml", cwd=work)

    expect(at_good, 0)
    assert at_good.stdout.splitlines() == [OK_SAMPLE]
    expect(at_bad, 1)
    assert at_bad.stderr.startswith(f"projects/churn/{MISSING_FUNCTION}")
    expect(at_top, 1)
    assert "no project.yaml" in at_top.stderr
    expect(from_work, 0)
    assert from_work.stdout.splitlines() == [OK_SAMPLE]


@pytest.mark.parametrize("revision", ["no-such-branch", "0123456789abcdef0123", "HEAD~5"])
def test_a_bad_revision_is_a_clear_user_error(
    run_cli: RunCli, sample_repo: Path, tmp_path: Path, revision: str
) -> None:
    bare = bare_clone(sample_repo, tmp_path / "bare.git")
    for where in (sample_repo, bare):
        done = run_cli("validate", "--revision", revision, cwd=where)
        expect(done, 1)
        assert done.stdout == ""
        assert done.stderr.strip().startswith(f"no revision {revision!r}")


@pytest.mark.parametrize("command", [
    ["validate", "--revision", "HEAD"], ["plan"], ["status"], ["functions"],
    ["functions", "show", "trainer"], ["diff"], ["schedule", "--once"],
])
def test_a_repository_with_no_commit_yet_says_so(
    run_cli: RunCli, sample_project: Path, command: list[str]
) -> None:
    """Not only that HEAD is unknown: that nothing is committed, and what to do."""
    make_repo(sample_project)
    done = run_cli(*command, cwd=sample_project)
    expect(done, 1)
    assert done.stderr.splitlines()[-1].endswith(
        ": the repository has no commit yet (commit the project first)")
    assert "index" not in done.stderr  # no results branch: nothing to say of its index


def test_runs_list_before_the_first_run_is_empty_and_quiet(
    run_cli: RunCli, sample_repo: Path
) -> None:
    done = run_cli("runs", "list", "--json", cwd=sample_repo)
    expect(done, 0)
    assert (json.loads(done.stdout), done.stderr) == ([], "")


def test_revision_outside_a_git_repository_is_a_clear_user_error(
    run_cli: RunCli, sample_project: Path
) -> None:
    done = run_cli("validate", "--revision", "HEAD", cwd=sample_project)
    expect(done, 1)
    assert "is not in a git repository" in done.stderr


# symbolic links: followed inside the project, refused out of it, alike at a revision


def move_and_link(project: Path, path: str, to: str) -> None:
    """Move the file or folder `path` of the project to `to`, and leave a relative link."""
    (project / to).parent.mkdir(parents=True, exist_ok=True)
    (project / path).rename(project / to)
    (project / path).symlink_to(os.path.relpath(project / to, (project / path).parent))


def test_links_inside_the_project_are_followed_in_the_tree_and_at_a_revision(
    run_cli: RunCli, sample_repo: Path, tmp_path: Path
) -> None:
    move_and_link(sample_repo, "src/prep.py", "lib/prep.py")  # a code file
    move_and_link(sample_repo, "src/churn", "lib/churn")  # a package
    move_and_link(sample_repo, "functions/report.yaml", "shared/report.yaml")  # a project file
    move_and_link(sample_repo, "requirements.txt", "lib/requirements.txt")
    move_and_link(sample_repo, "lib", "vendor/lib")  # a link on the way to the others
    commit_all(sample_repo, "links inside the project")
    bare = bare_clone(sample_repo, tmp_path / "bare.git")

    for done in (run_cli("validate", sample_repo), run_cli("validate", "-r", "HEAD", sample_repo),
                 run_cli("validate", "-r", "HEAD", bare)):
        expect(done, 0)
        assert done.stdout.splitlines() == [OK_SAMPLE]


def test_a_link_out_of_the_project_is_refused_in_the_tree_and_at_a_revision(
    run_cli: RunCli, sample_repo: Path
) -> None:
    move_and_link(sample_repo, "src/churn", "../churn-outside")
    commit_all(sample_repo, "a link out of the project")
    wanted = "functions/trainer.yaml:6:7: code 'src/churn': it is a symbolic link to '../../churn-outside'"

    for done in (run_cli("validate", sample_repo, cwd=sample_repo),
                 run_cli("validate", "-r", "HEAD", sample_repo, cwd=sample_repo)):
        expect(done, 1)
        assert done.stderr.startswith(wanted), done.stderr


# a file that fails its schema still has the rest of it checked


def test_schema_errors_do_not_hide_the_other_errors_of_the_file(
    run_cli: RunCli, sample_project: Path
) -> None:
    edit_file(sample_project / "jobs" / "train.yaml", "function: trainer,", "function: trainer-v2,")
    edit_file(sample_project / "jobs" / "train.yaml", "description:", "parallel: many\ndescription:")
    done = run_cli("validate", ".", cwd=sample_project)
    expect(done, 1)
    problems = [line for line in done.stderr.splitlines() if PROBLEM_LINE.match(line)]
    assert len(problems) == 2, done.stderr
    assert "parallel: must be an integer" in problems[0]
    assert problems[1].startswith("jobs/train.yaml:8:17: no function named 'trainer-v2'")


def test_a_broken_project_yaml_does_not_hide_the_other_files(run_cli: RunCli, sample_project: Path) -> None:
    edit_file(sample_project / "project.yaml", "apiVersion: runyard/v1", "apiVersion: runyard/v2")
    break_job_function(sample_project)
    done = run_cli("validate", ".", cwd=sample_project)
    expect(done, 1)
    assert "project.yaml:2:13: apiVersion: must be 'runyard/v1'" in done.stderr
    assert MISSING_FUNCTION in done.stderr


def test_what_a_schema_error_removes_is_not_reported_missing(run_cli: RunCli, tmp_path: Path) -> None:
    project = copy_project(CORPUS_BASE, tmp_path / "project")
    edit_file(project / "functions" / "trainer.yaml", "handler: train", "handler: [train]")
    edit_file(project / "functions" / "report.yaml", "command: [sh, scripts/report.sh]", "command: sh")
    edit_file(project / "project.yaml", "secrets: [API_TOKEN]", "secrets: API_TOKEN")
    done = run_cli("validate", ".", cwd=project)
    expect(done, 1)
    problems = [line for line in done.stderr.splitlines() if PROBLEM_LINE.match(line)]
    assert [line.split(": ", 1)[1] for line in problems] == [
        "command: must be a list, not a string",
        "handler: must be a string, not a list",
        "secrets: must be a list, not a string",
    ], done.stderr  # no "needs code or command", "has no handler", "not one of the project's secrets"


def test_keys_missing_together_are_named_each_once(run_cli: RunCli, tmp_path: Path) -> None:
    """jsonschema reports each missing key apart, alike: one problem names them all."""
    project = copy_project(CORPUS_BASE, tmp_path / "project")
    (project / "jobs" / "bare.yaml").write_text("kind: job\n")
    (project / "pipelines" / "steps.yaml").write_text(
        "apiVersion: runyard/v1\nkind: pipeline\nname: steps\nsteps:\n  - {name: one}\n  - {}\n")
    done = run_cli("validate", ".", cwd=project)
    expect(done, 1)
    assert done.stderr.splitlines() == [
        "jobs/bare.yaml:1:1: missing required keys 'apiVersion', 'name' and 'run'",
        "pipelines/steps.yaml:5:5: steps[0]: missing required key 'function'",
        "pipelines/steps.yaml:6:5: steps[1]: missing required keys 'name' and 'function'",
        "3 errors in 2 files",
    ]


WRONG_VALUES = (None, "x", 0, [], {})


def paths_of(data: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path to a value of a YAML document, the document itself first."""
    found = [prefix]
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        found += paths_of(value, (*prefix, key))
    return found


def changed(data: object, path: tuple[str | int, ...], value: object) -> object:
    """A copy of `data` with the value at `path` replaced by `value` (removed if it is DROP)."""
    if not path:
        return value
    copy = json.loads(json.dumps(data))
    parent = copy
    for part in path[:-1]:
        parent = parent[part]
    if value is DROP:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return copy


DROP = object()


@pytest.mark.parametrize("file", sorted(p.relative_to(CORPUS_BASE).as_posix()
                                        for p in CORPUS_BASE.rglob("*.yaml")))
def test_any_value_of_the_wrong_type_or_missing_is_a_problem_never_a_crash(
    file: str, tmp_path: Path
) -> None:
    project = copy_project(CORPUS_BASE, tmp_path / "project")
    original = yaml.safe_load((CORPUS_BASE / file).read_text("utf-8"))
    source = DirectorySource(project)
    for path in paths_of(original):
        for value in (*WRONG_VALUES, DROP) if path else WRONG_VALUES:
            (project / file).write_text(yaml.safe_dump(changed(original, path, value)), "utf-8")
            try:
                load_project(source)
            except ProjectInvalid as error:
                assert error.problems, (path, value)


def test_a_file_argument_that_links_out_still_has_its_project_checked(
    run_cli: RunCli, sample_project: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere" / "report.yaml"
    outside.parent.mkdir()
    (sample_project / "functions" / "report.yaml").rename(outside)
    (sample_project / "functions" / "report.yaml").symlink_to(outside)
    done = run_cli("validate", "functions/report.yaml", cwd=sample_project)  # as pre-commit passes it
    expect(done, 1)
    assert done.stderr.startswith("functions/report.yaml:1:1: it is a symbolic link to "), done.stderr


def test_both_sources_answer_alike_for_paths_that_are_not_there(sample_repo: Path) -> None:
    (sample_repo / "loop").symlink_to("loop")
    (sample_repo / "out").symlink_to("../elsewhere")
    commit_all(sample_repo, "links")
    for source in (open_source(sample_repo), open_source(sample_repo, "HEAD")):
        with closing(source):
            for path in ("src/\0prep.py", "loop", "loop/x", "out", "out/x", "no/such", "src/prep.py/x"):
                assert not source.is_file(path) and not source.is_dir(path), (source, path)
                with pytest.raises(SourceError):
                    source.read(path)
            assert source.lexists("loop") and source.lexists("out") and not source.lexists("out/x")


# other commands and other failures


def test_schema_prints_a_json_schema(run_cli: RunCli) -> None:
    done = run_cli("schema", "function")
    expect(done, 0)
    schema = json.loads(done.stdout)
    assert schema["$id"].endswith("/function.schema.json")
    assert "properties" in schema
    assert schema == json.loads((SAMPLE_PROJECT.parent / "schemas" / "function.schema.json")
                                .read_text())


def test_schema_of_an_unknown_kind_is_a_usage_error(run_cli: RunCli) -> None:
    done = run_cli("schema", "widget")
    expect(done, 2)
    assert "widget" in done.stderr


def test_no_project_around_says_so(run_cli: RunCli, tmp_path: Path) -> None:
    done = run_cli("validate", cwd=tmp_path)
    expect(done, 1)
    assert "no project.yaml" in done.stderr
    assert "runyard init" in done.stderr


def test_a_path_that_is_not_there_is_an_error_not_a_pass(run_cli: RunCli, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    for done in (run_cli("validate", missing), run_cli("validate", SAMPLE_PROJECT, missing)):
        expect(done, 1)
        assert done.stderr.strip() == f"no such file or folder: {missing}"
    as_json = run_cli("validate", "--json", missing)
    expect(as_json, 1)
    report = json.loads(as_json.stdout)
    assert report["valid"] is False and report["projects"] == []
    assert report["error"] == f"no such file or folder: {missing}"


def test_json_report_when_there_is_no_project(run_cli: RunCli, tmp_path: Path) -> None:
    done = run_cli("validate", "--json", cwd=tmp_path)
    expect(done, 1)
    report = json.loads(done.stdout)
    assert report["valid"] is False and "no project.yaml" in report["error"]


def test_an_internal_error_exits_3_without_a_traceback_unless_asked(tmp_path: Path) -> None:
    script = (
        "import runner.cli, runner.cli.validate as v\n"
        "def boom(source): raise RuntimeError('kaput')\n"
        "v.load_project = boom\n"
        f"runner.cli.main(['validate', {str(SAMPLE_PROJECT)!r}])\n"
    )
    quiet = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    loud = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "RUNYARD_DEBUG": "1"})
    assert quiet.returncode == 3
    assert "internal error" in quiet.stderr
    assert "RuntimeError: kaput" in quiet.stderr
    assert "Traceback" not in quiet.stderr
    assert loud.returncode == 1  # the exception leaves Python itself
    assert "Traceback" in loud.stderr



def test_the_runyard_process_leaves_at_once_with_its_output_and_exit_code(tmp_path: Path) -> None:
    """runner.cli.run skips the interpreter's teardown, but not the output, the exit code,
    atexit's handlers, or a thread still at work."""

    def process(argv: list[str], before: str = "") -> subprocess.CompletedProcess[str]:
        script = (f"import atexit, sys, threading, time, runner.cli\n{before}"
                  "atexit.register(lambda: print('atexit ran'))\n"
                  f"sys.argv = ['runyard', *{argv!r}]\nrunner.cli.run()\n")
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              cwd=tmp_path, timeout=60)

    schema = process(["schema", "job"])
    assert schema.returncode == 0, schema.stderr
    text, _, last = schema.stdout.rstrip("\n").rpartition("\n")
    assert json.loads(text)["title"] and last == "atexit ran"
    missing = process(["validate", str(tmp_path / "nowhere")])
    assert missing.returncode == 1 and "no such file or folder" in missing.stderr
    usage = process(["no-such-command"])
    assert usage.returncode == 2 and "No such command" in usage.stderr
    waited = process(["schema", "job"], before=(
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\n"))
    assert waited.returncode == 0 and waited.stdout.rstrip().endswith("thread done\natexit ran")
    profiled = tmp_path / "run.prof"
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profiled), "-m", "runner",
                           "schema", "job"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=60)
    assert done.returncode == 0 and profiled.stat().st_size > 0  # the profiler wrote its data

# the loader, as a library


def test_load_project_returns_a_frozen_model_of_the_sample() -> None:
    project = load_project(DirectorySource(SAMPLE_PROJECT))

    assert isinstance(project, Project)
    assert project.name == "churn"
    assert project.revision is None
    assert sorted(project.functions) == ["data-prep", "report", "trainer"]
    assert sorted(project.pipelines) == ["training"]
    assert sorted(project.jobs) == ["nightly", "train", "tune"]
    steps = [step.name for step in project.pipelines["training"].steps]
    assert steps == ["prep", "train", "evaluate", "report"]
    assert project.functions["trainer"].code == "src/churn"
    assert project.functions["report"].command == ("sh", "scripts/report.sh")
    assert project.jobs["tune"].hyper is not None
    assert project.jobs["tune"].hyper.params == {"lr": (0.05, 0.2), "depth": (2, 3, 5)}
    with pytest.raises(dataclasses.FrozenInstanceError):
        project.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        project.functions["trainer"].handler = "evaluate"  # type: ignore[misc]


def test_load_project_at_a_revision_knows_the_revision(sample_repo: Path) -> None:
    head = git(sample_repo, "rev-parse", "HEAD").strip()
    break_job_function(sample_repo)
    with closing(open_source(sample_repo, "HEAD")) as source:
        project = load_project(source)
    assert project.revision == head
    assert project.jobs["train"].run.function == "trainer"


def test_validating_imports_neither_docker_nor_git(sample_project: Path) -> None:
    script = (
        "import sys, runner.cli\n"
        "try:\n"
        f"    runner.cli.main(['validate', {str(sample_project)!r}])\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code)\n"
        "print('loaded:', *[m for m in ('docker', 'git', 'runner.build') if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.splitlines() == [OK_SAMPLE, "loaded:"]


# what `run` refuses as the project loads, before anything is built


@pytest.mark.parametrize("target, said", [
    ("tarin", "no job or function named 'tarin'; did you mean 'train'? (jobs: "),
    ("training", "'training' is a pipeline, not a job or function; run a job that runs it: tune"),
])
def test_run_names_what_the_target_was_near(run_cli: RunCli, sample_repo: Path, target: str,
                                            said: str) -> None:
    done = run_cli("run", target, "--backend", "local", cwd=sample_repo)
    expect(done, 1)
    assert done.stderr.startswith(said)
    assert git(sample_repo, "branch", "--list", "runyard/results") == ""  # nothing recorded
