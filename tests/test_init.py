"""`runyard init`: new projects from templates and from other projects, checked by `validate`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runner.project.yamlread import read_document
from tests.helpers import SAMPLE_PROJECT, RunCli, bare_clone, commit_all, git, make_repo

TEMPLATE_FILES = {
    "basic": [".gitignore", "functions/hello.yaml", "jobs/hello.yaml", "project.yaml",
              "src/hello.py"],
    "pipeline": [
        ".gitignore", "functions/steps.yaml", "jobs/tune.yaml", "pipelines/fit.yaml",
        "project.yaml", "src/steps.py",
    ],
}
TEMPLATE_COUNTS = {
    "basic": "1 function, 0 pipelines, 1 job",
    "pipeline": "1 function, 1 pipeline, 1 job",
}
SAMPLE_COUNTS = "3 functions, 1 pipeline, 3 jobs"


def expect(done: subprocess.CompletedProcess[str], code: int) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert "Traceback" not in output
    assert "internal error" not in output


def files_in(folder: Path) -> list[str]:
    """The project's files: not git's, not run state, not byte code."""
    skip = {".git", ".runyard", "__pycache__"}
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not skip.intersection(p.relative_to(folder).parts)
    )


def project_name(folder: Path) -> str:
    doc = read_document("project.yaml", (folder / "project.yaml").read_bytes())
    name: str = doc.data["name"]
    return name


def assert_validates(run_cli: RunCli, folder: Path, name: str, counts: str) -> None:
    done = run_cli("validate", folder)
    expect(done, 0)
    assert done.stdout.splitlines() == [f"ok: project {name!r}: {counts}"]


# templates


@pytest.mark.parametrize("template", sorted(TEMPLATE_FILES))
def test_each_template_makes_a_project_that_validates(
    run_cli: RunCli, tmp_path: Path, template: str
) -> None:
    target = tmp_path / f"my-{template}"
    done = run_cli("init", target, "--template", template)
    expect(done, 0)
    assert f"made project 'my-{template}'" in done.stdout
    assert files_in(target) == TEMPLATE_FILES[template]
    for file in TEMPLATE_FILES[template]:
        text = (target / file).read_text()
        assert "{{" not in text and "{%" not in text, file
    assert project_name(target) == f"my-{template}"
    assert_validates(run_cli, target, f"my-{template}", TEMPLATE_COUNTS[template])


def test_the_default_template_is_basic(run_cli: RunCli, tmp_path: Path) -> None:
    expect(run_cli("init", "proj", cwd=tmp_path), 0)
    assert files_in(tmp_path / "proj") == TEMPLATE_FILES["basic"]


def test_the_default_name_comes_from_the_folder(run_cli: RunCli, tmp_path: Path) -> None:
    target = tmp_path / "Weekly Report_2"
    expect(run_cli("init", target), 0)
    assert project_name(target) == "weekly-report-2"
    assert_validates(run_cli, target, "weekly-report-2", TEMPLATE_COUNTS["basic"])


def test_name_sets_the_project_name(run_cli: RunCli, tmp_path: Path) -> None:
    target = tmp_path / "folder"
    done = run_cli("init", target, "--name", "churn-v2", "--template", "pipeline")
    expect(done, 0)
    assert "made project 'churn-v2'" in done.stdout
    assert project_name(target) == "churn-v2"
    assert_validates(run_cli, target, "churn-v2", TEMPLATE_COUNTS["pipeline"])


@pytest.mark.parametrize("name", ["Churn", "churn_v2", "2churn", "-churn", "c" * 64, ""])
def test_a_bad_name_is_refused(run_cli: RunCli, tmp_path: Path, name: str) -> None:
    target = tmp_path / "proj"
    done = run_cli("init", target, "--name", name)
    expect(done, 1)
    assert "is not a valid project name" in done.stderr
    assert not target.exists()


def test_a_folder_name_that_makes_no_valid_name_is_refused(
    run_cli: RunCli, tmp_path: Path
) -> None:
    done = run_cli("init", tmp_path / "2024")
    expect(done, 1)
    assert "'2024' is not a valid project name" in done.stderr
    assert "--name" in done.stderr


def test_a_folder_that_cannot_be_made_is_a_users_error(run_cli: RunCli, tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    done = run_cli("init", a_file / "proj")
    expect(done, 1)
    assert done.stderr.strip() == f"cannot make the folder {a_file / 'proj'}: Not a directory"
    assert a_file.read_text() == "mine"


def test_a_template_and_a_baseline_together_are_a_usage_error(run_cli: RunCli,
                                                              tmp_path: Path) -> None:
    """One of them would be dropped without a word."""
    target = tmp_path / "proj"
    done = run_cli("init", target, "--from", SAMPLE_PROJECT, "--template", "pipeline")
    expect(done, 2)
    assert "--template and --from both say what to start from: give one" in done.stderr
    assert not target.exists()


# folders that are there already


def test_an_empty_folder_is_used(run_cli: RunCli, tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    expect(run_cli("init", target), 0)
    assert files_in(target) == TEMPLATE_FILES["basic"]


def test_a_folder_that_is_not_empty_needs_force(run_cli: RunCli, tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine\n")

    refused = run_cli("init", target)
    expect(refused, 1)
    assert "is not empty" in refused.stderr
    assert "--force" in refused.stderr
    assert files_in(target) == ["notes.txt"]

    forced = run_cli("init", target, "--force")
    expect(forced, 0)
    assert files_in(target) == sorted([*TEMPLATE_FILES["basic"], "notes.txt"])
    assert (target / "notes.txt").read_text() == "mine\n"
    assert_validates(run_cli, target, "busy", TEMPLATE_COUNTS["basic"])


# --init-git


def test_init_git_commits_everything(run_cli: RunCli, tmp_path: Path) -> None:
    target = tmp_path / "repo"
    expect(run_cli("init", target, "--template", "pipeline", "--init-git"), 0)

    committed = git(target, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert sorted(committed) == TEMPLATE_FILES["pipeline"] == files_in(target)
    assert git(target, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(target, "rev-list", "--count", "HEAD").strip() == "1"
    done = run_cli("validate", "--revision", "HEAD", target)
    expect(done, 0)
    assert done.stdout.splitlines() == [f"ok: project 'repo': {TEMPLATE_COUNTS['pipeline']}"]


# --from another project


def test_from_a_folder_copies_the_project_under_the_new_name(
    run_cli: RunCli, sample_project: Path, tmp_path: Path
) -> None:
    (sample_project / ".runyard" / "artifacts").mkdir(parents=True)
    (sample_project / ".runyard" / "artifacts" / "blob").write_text("run state\n")
    (sample_project / "src" / "__pycache__").mkdir()
    (sample_project / "src" / "__pycache__" / "prep.cpython-311.pyc").write_bytes(b"\0")
    target = tmp_path / "copy"

    done = run_cli("init", target, "--from", sample_project, "--name", "churn-copy")

    expect(done, 0)
    assert files_in(target) == files_in(SAMPLE_PROJECT)
    assert not (target / ".runyard").exists()
    assert not (target / "src" / "__pycache__").exists()
    before = (SAMPLE_PROJECT / "project.yaml").read_text().splitlines()
    after = (target / "project.yaml").read_text().splitlines()
    changed = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert changed == [("name: churn", "name: churn-copy")]
    assert any("#" in line for line in after)  # the comments are kept
    assert (target / "src" / "prep.py").read_bytes() == (SAMPLE_PROJECT / "src" / "prep.py"
                                                         ).read_bytes()
    assert_validates(run_cli, target, "churn-copy", SAMPLE_COUNTS)


def test_from_a_folder_without_name_takes_the_target_folders_name(
    run_cli: RunCli, tmp_path: Path
) -> None:
    target = tmp_path / "retention"
    expect(run_cli("init", target, "--from", SAMPLE_PROJECT), 0)
    assert project_name(target) == "retention"
    assert_validates(run_cli, target, "retention", SAMPLE_COUNTS)


@pytest.fixture
def sample_bare_repo(sample_repo: Path, tmp_path: Path) -> Path:
    """A bare repository whose main branch holds the sample project at its top."""
    return bare_clone(sample_repo, tmp_path / "sample.git")


@pytest.mark.parametrize("form", ["file-url", "path"])
def test_from_a_git_repository(
    run_cli: RunCli, sample_bare_repo: Path, tmp_path: Path, form: str
) -> None:
    baseline = sample_bare_repo.as_uri() if form == "file-url" else str(sample_bare_repo)
    target = tmp_path / "cloned"

    done = run_cli("init", target, "--from", baseline, "--name", "from-git")

    expect(done, 0)
    assert not (target / ".git").exists()
    assert files_in(target) == files_in(SAMPLE_PROJECT)
    assert project_name(target) == "from-git"
    assert "# every run sees it" in (target / "project.yaml").read_text()
    assert_validates(run_cli, target, "from-git", SAMPLE_COUNTS)


def test_from_a_git_repository_takes_what_is_committed(
    run_cli: RunCli, sample_repo: Path, tmp_path: Path
) -> None:
    (sample_repo / "jobs" / "train.yaml").unlink()
    commit_all(sample_repo, "no train job")
    (sample_repo / "jobs" / "nightly.yaml").unlink()  # not committed: still in the clone
    target = tmp_path / "cloned"

    expect(run_cli("init", target, "--from", sample_repo.as_uri()), 0)

    assert sorted(p.name for p in (target / "jobs").iterdir()) == ["nightly.yaml", "tune.yaml"]
    assert_validates(run_cli, target, "cloned", "3 functions, 1 pipeline, 2 jobs")


def test_from_a_folder_that_is_not_a_project_fails(run_cli: RunCli, tmp_path: Path) -> None:
    source = tmp_path / "not-a-project"
    (source / "functions").mkdir(parents=True)
    target = tmp_path / "target"

    done = run_cli("init", target, "--from", source)

    expect(done, 1)
    assert f"{source} has no project.yaml" in done.stderr
    assert not target.exists()


def test_from_a_repository_without_a_project_at_its_top_fails(
    run_cli: RunCli, tmp_path: Path
) -> None:
    work = make_repo(tmp_path / "work")
    (work / "README.md").write_text("no project here\n")
    commit_all(work, "just a readme")
    bare = bare_clone(work, tmp_path / "work.git")
    target = tmp_path / "target"

    done = run_cli("init", target, "--from", bare.as_uri())

    expect(done, 1)
    assert f"{bare.as_uri()} has no project.yaml" in done.stderr
    assert not target.exists()


def test_from_something_that_is_neither_a_folder_nor_a_repository_fails(
    run_cli: RunCli, tmp_path: Path
) -> None:
    missing = (tmp_path / "nowhere.git").as_uri()
    target = tmp_path / "target"

    done = run_cli("init", target, "--from", missing)

    expect(done, 1)
    assert f"cannot clone {missing}" in done.stderr
    assert not target.exists()
