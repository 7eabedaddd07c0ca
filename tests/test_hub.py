"""The function hub: reading hubs (the one in the package, git repositories), adding a
function to a project, updating it, and refusing hostile hub content. Real git, real files."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from runner.errors import RunyardError
from runner.hub.catalog import DEFAULT_FOLDER, MAX_FILE_BYTES, open_hub
from runner.hub.install import add_function, apply_update, diff_text, update_changes
from runner.project.scaffold import init_project
from tests.helpers import RunCli, commit_all, git, make_repo

BUILTIN = sorted(path.name for path in (DEFAULT_FOLDER / "functions").iterdir())
SIX = ["column-stats", "compare-models", "describe-csv", "quality-check", "split-dataset",
       "train-classifier"]


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh project from the basic template."""
    root = tmp_path / "proj"
    init_project(root, "proj")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its content: what 'nothing was written' compares."""
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file() and not path.is_symlink()} | {
        str(path.relative_to(root)) + "/": b"" for path in root.rglob("*") if path.is_dir()}


def git_hub(root: Path, *names: str) -> Path:
    """A git repository holding copies of builtin functions, committed."""
    make_repo(root)
    for name in names:
        shutil.copytree(DEFAULT_FOLDER / "functions" / name, root / "functions" / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    commit_all(root, "the hub")
    return root


def set_version(hub: Path, name: str, version: str, extra: str = "") -> str:
    """Give the hub function a new version (and a line of code), committed; the commit."""
    definition = hub / "functions" / name / "function.yaml"
    text = definition.read_text()
    old = yaml.safe_load(text)["labels"]["version"]
    definition.write_text(text.replace(f'version: "{old}"', f'version: "{version}"'))
    if extra:
        code = hub / "functions" / name / yaml.safe_load(text)["code"]
        code.write_text(code.read_text() + extra)
    return commit_all(hub, f"{name} {version}")


def commit_tree(hub: Path, entries: list[str], message: str = "hostile") -> None:
    """Commit a tree made with `git mktree` under functions/evil/, which `git add` could not
    make (names such as '..'), on top of the hub's branch."""
    inner = git(hub, "mktree", stdin="".join(f"{line}\n" for line in entries)).strip()
    functions = git(hub, "mktree", stdin=f"040000 tree {inner}\tevil\n").strip()
    top = git(hub, "mktree", stdin=f"040000 tree {functions}\tfunctions\n").strip()
    commit = git(hub, "commit-tree", top, "-p", "HEAD", "-m", message).strip()
    git(hub, "update-ref", "refs/heads/main", commit)


def blob(hub: Path, text: str) -> str:
    return git(hub, "hash-object", "-w", "--stdin", stdin=text).strip()


# --- the hub runyard ships -------------------------------------------------------------------


def test_the_builtin_hub_has_the_six_functions_each_checked() -> None:
    with open_hub(None) as hub:
        assert hub.names() == BUILTIN
        assert set(SIX) <= set(BUILTIN)
        for name in BUILTIN:
            function = hub.function(name)
            assert function.version == "1.0.0"
            assert function.hub == "builtin"
            assert function.revision.startswith("sha256:")
            assert function.readme.startswith(f"# {name}\n")
            assert function.code in function.files


def test_a_version_the_builtin_hub_does_not_have_is_refused() -> None:
    only = re.escape("version 1.0.0 only, not 9.9")
    with open_hub("builtin") as hub, pytest.raises(RunyardError, match=only):
        hub.function("describe-csv", "9.9")
    with open_hub(None) as hub, pytest.raises(RunyardError, match="has no function 'nope'; it has: "):
        hub.function("nope")


# --- adding ----------------------------------------------------------------------------------


def test_add_copies_definition_and_code_with_the_origin_in_labels(project: Path) -> None:
    with open_hub(None) as hub:
        function = hub.function("describe-csv")
    written = add_function(project, function, "describe-csv")
    assert written == ["functions/describe-csv.yaml", "src/describe-csv/README.md",
                       "src/describe-csv/describe_csv.py"]
    data = yaml.safe_load((project / "functions/describe-csv.yaml").read_text())
    assert data["name"] == "describe-csv"
    assert data["code"] == "src/describe-csv/describe_csv.py"
    assert data["labels"] == {"hub-source": "builtin", "hub-function": "describe-csv",
                              "hub-version": "1.0.0", "hub-revision": function.revision}
    assert (project / "src/describe-csv/describe_csv.py").read_bytes() == \
        (DEFAULT_FOLDER / "functions/describe-csv/describe_csv.py").read_bytes()


def test_add_as_a_new_name_moves_code_and_command_paths(project: Path) -> None:
    with open_hub(None) as hub:
        add_function(project, hub.function("column-stats"), "stats")
    data = yaml.safe_load((project / "functions/stats.yaml").read_text())
    assert data["name"] == "stats"
    assert data["code"] == "src/stats/column_stats.sh"
    assert data["command"] == ["sh", "src/stats/column_stats.sh"]  # `sh` stays a program name
    assert data["labels"]["hub-function"] == "column-stats"


def test_every_builtin_function_can_be_added_and_the_project_validates(
        run_cli: RunCli, project: Path) -> None:
    for name in BUILTIN:
        done = run_cli("hub", "add", name, "-C", project)
        assert done.returncode == 0, done.stderr
    done = run_cli("validate", project)
    assert done.returncode == 0, done.stderr
    assert f"{len(BUILTIN) + 1} functions" in done.stdout


def test_add_never_overwrites(run_cli: RunCli, project: Path) -> None:
    with open_hub(None) as hub:
        add_function(project, hub.function("split-dataset"), "split-dataset")
        before = snapshot(project)
        with pytest.raises(RunyardError, match="has a function 'split-dataset' already"):
            add_function(project, hub.function("split-dataset"), "split-dataset")
        (project / "src/taken").mkdir()
        with pytest.raises(RunyardError, match="src/taken exists already"):
            add_function(project, hub.function("split-dataset"), "taken")
        assert snapshot(project) == before | {"src/taken/": b""}
    done = run_cli("hub", "add", "split-dataset", "-C", project)
    assert (done.returncode, done.stdout) == (1, "")
    assert "already" in done.stderr and "Traceback" not in done.stderr


def test_a_function_the_checks_refuse_leaves_nothing_written(project: Path, tmp_path: Path) -> None:
    hub = git_hub(tmp_path / "hub", "split-dataset")
    definition = hub / "functions/split-dataset/function.yaml"
    definition.write_text(definition.read_text().replace("handler: split", "handler: no_such"))
    commit_all(hub, "a handler its code does not have")
    before = snapshot(project)
    with open_hub(str(hub)) as opened, pytest.raises(RunyardError) as raised:
        add_function(project, opened.function("split-dataset"), "split-dataset")
    assert "would leave the project invalid; nothing was changed" in raised.value.message
    assert any("no_such" in problem.message for problem in raised.value.problems)
    assert snapshot(project) == before


def test_a_project_that_is_invalid_already_is_not_added_to(project: Path) -> None:
    (project / "functions/broken.yaml").write_text("apiVersion: runyard/v1\nkind: function\nname: Bad\n")
    before = snapshot(project)
    with open_hub(None) as hub, pytest.raises(RunyardError, match="does not validate now"):
        add_function(project, hub.function("split-dataset"), "split-dataset")
    assert snapshot(project) == before


def test_add_does_not_write_through_a_linked_folder(project: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.rmtree(project / "src")
    (project / "src").symlink_to(outside)
    with open_hub(None) as hub, pytest.raises(RunyardError):
        add_function(project, hub.function("quality-check"), "quality-check")
    assert list(outside.iterdir()) == []
    assert not (project / "functions/quality-check.yaml").exists()


def test_the_cli_refuses_bad_names_and_versions(run_cli: RunCli, project: Path) -> None:
    for bad in ("Bad_Name", ""):  # an empty name is refused, not taken for no --as
        done = run_cli("hub", "add", "describe-csv", "--as", bad, "-C", project)
        assert done.returncode == 1 and f"{bad!r} is not a valid function name" in done.stderr
    assert not (project / "functions" / "describe-csv.yaml").exists()
    done = run_cli("hub", "add", "describe-csv@", "-C", project)
    assert done.returncode == 2
    done = run_cli("hub", "show", "nope")
    assert done.returncode == 1 and "has no function 'nope'" in done.stderr


# --- a git hub: versions and updates ---------------------------------------------------------


def test_a_git_hub_lists_shows_and_adds_an_older_version(
        run_cli: RunCli, project: Path, tmp_path: Path) -> None:
    hub = git_hub(tmp_path / "hub", "split-dataset", "quality-check")
    first = git(hub, "rev-parse", "HEAD").strip()
    set_version(hub, "split-dataset", "1.1.0", "# 1.1.0\n")
    done = run_cli("hub", "list", "--hub", hub, "--json")
    assert done.returncode == 0, done.stderr
    listed = {item["name"]: item for item in json.loads(done.stdout)}
    assert {name: item["version"] for name, item in listed.items()} == {
        "quality-check": "1.0.0", "split-dataset": "1.1.0"}
    assert listed["quality-check"]["revision"] == first  # the commit that last changed it
    assert listed["split-dataset"]["hub"] == str(hub.resolve())
    done = run_cli("hub", "show", "split-dataset@1.0.0", "--hub", hub)
    assert done.returncode == 0 and "split-dataset 1.0.0" in done.stdout
    done = run_cli("hub", "add", "split-dataset@1.0.0", "--as", "split", "--hub", hub, "-C", project)
    assert done.returncode == 0, done.stderr
    labels = yaml.safe_load((project / "functions/split.yaml").read_text())["labels"]
    assert labels == {"hub-source": str(hub.resolve()), "hub-function": "split-dataset",
                      "hub-version": "1.0.0", "hub-revision": first}
    assert "# 1.1.0" not in (project / "src/split/split_dataset.py").read_text()


def test_update_shows_the_difference_and_applies_it_when_asked(
        run_cli: RunCli, project: Path, tmp_path: Path) -> None:
    hub = git_hub(tmp_path / "hub", "split-dataset")
    assert run_cli("hub", "add", "split-dataset", "--hub", hub, "-C", project).returncode == 0
    done = run_cli("hub", "update", "split-dataset", "-C", project)
    assert (done.returncode, done.stdout.strip()) == (
        0, "split-dataset is up to date with split-dataset 1.0.0 of hub " + str(hub.resolve()))
    set_version(hub, "split-dataset", "1.1.0", "# new in 1.1.0\n")
    (hub / "functions/split-dataset/NOTES.md").write_text("notes\n")
    newest = commit_all(hub, "notes")
    before = snapshot(project)
    done = run_cli("hub", "update", "split-dataset", "-C", project)
    assert done.returncode == 0, done.stderr
    assert "-  hub-version: 1.0.0\n" in done.stdout and "+  hub-version: 1.1.0\n" in done.stdout
    assert "+# new in 1.1.0\n" in done.stdout
    assert "--- /dev/null\n+++ b/src/split-dataset/NOTES.md\n" in done.stdout
    assert "apply with: runyard hub update split-dataset --yes" in done.stdout
    assert snapshot(project) == before  # only shown
    done = run_cli("hub", "update", "split-dataset", "--yes", "-C", project)
    assert done.returncode == 0, done.stderr
    labels = yaml.safe_load((project / "functions/split-dataset.yaml").read_text())["labels"]
    assert (labels["hub-version"], labels["hub-revision"]) == ("1.1.0", newest)
    assert (project / "src/split-dataset/NOTES.md").read_text() == "notes\n"
    assert run_cli("validate", project).returncode == 0
    assert "up to date" in run_cli("hub", "update", "split-dataset", "-C", project).stdout


def test_update_deletes_what_the_hub_dropped_and_undoes_a_change_that_breaks(
        project: Path, tmp_path: Path) -> None:
    hub = git_hub(tmp_path / "hub", "compare-models")
    (hub / "functions/compare-models/extra.txt").write_text("dropped later\n")
    commit_all(hub, "an extra file")
    with open_hub(str(hub)) as opened:
        add_function(project, opened.function("compare-models"), "compare")
    (project / "src/compare/compare_models.py").write_text("def compare():\n    pass\n")  # a local edit
    git(hub, "rm", "--quiet", "functions/compare-models/extra.txt")
    commit_all(hub, "no extra file")
    with open_hub(str(hub)) as opened:
        changes = update_changes(project, "compare", opened.function("compare-models"))
    assert [(change.path, change.new is None) for change in changes] == [
        ("functions/compare.yaml", False),  # its hub-revision
        ("src/compare/compare_models.py", False), ("src/compare/extra.txt", True)]
    shown = diff_text(changes)
    assert "-def compare():\n" in shown  # the local edit, shown being undone
    assert "--- a/src/compare/extra.txt\n+++ /dev/null\n" in shown
    apply_update(project, "compare", changes)
    assert not (project / "src/compare/extra.txt").exists()
    assert "def compare(context" in (project / "src/compare/compare_models.py").read_text()
    # a hub version whose handler is gone: the update is undone whole
    definition = hub / "functions/compare-models/function.yaml"
    definition.write_text(definition.read_text().replace("handler: compare", "handler: gone"))
    commit_all(hub, "a broken version")
    before = snapshot(project)
    with open_hub(str(hub)) as opened:
        changes = update_changes(project, "compare", opened.function("compare-models"))
    with pytest.raises(RunyardError, match="would leave the project invalid"):
        apply_update(project, "compare", changes)
    assert snapshot(project) == before


def test_update_of_a_function_not_from_a_hub_is_refused(run_cli: RunCli, project: Path) -> None:
    done = run_cli("hub", "update", "hello", "-C", project)
    assert done.returncode == 1 and "was not added from a hub" in done.stderr
    done = run_cli("hub", "update", "nope", "-C", project)
    assert done.returncode == 1 and "has no function 'nope'" in done.stderr


# --- hostile hubs ----------------------------------------------------------------------------


def test_what_is_not_a_hub_is_refused(run_cli: RunCli, tmp_path: Path) -> None:
    plain = make_repo(tmp_path / "plain")
    (plain / "README.md").write_text("hi\n")
    commit_all(plain, "no functions")
    for location, message in [(plain, "has no functions/ folder: not a hub"),
                              (tmp_path / "missing", "cannot read the hub"),
                              (make_repo(tmp_path / "empty"), "")]:
        done = run_cli("hub", "list", "--hub", location)
        assert done.returncode == 1, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("entries", "message"), [
    (["100644 blob {readme}\t..", "100644 blob {definition}\tfunction.yaml"], "is not a safe path"),
    (["100644 blob {readme}\t.git", "100644 blob {definition}\tfunction.yaml"], "is not a safe path"),
    (["120000 blob {target}\tREADME.md", "100644 blob {definition}\tfunction.yaml"],
     "is a symbolic link"),
    (["160000 commit {commit}\tsub", "100644 blob {readme}\tREADME.md",
      "100644 blob {definition}\tfunction.yaml"], "neither a file nor a folder"),
    (["100644 blob {readme}\tREADME.md", "100644 blob {big}\tdata.bin",
      "100644 blob {definition}\tfunction.yaml"], f"the limit is {MAX_FILE_BYTES}"),
    (["100644 blob {readme}\tREADME.md"], "has no function.yaml"),
    (["100644 blob {readme}\tREADME.md", "100644 blob {escape}\tfunction.yaml", "100644 blob {readme}\tx.py"],
     "code '../../../etc/passwd' is not a file or folder of the function"),
    (["100644 blob {readme}\tREADME.md", "100644 blob {renamed}\tfunction.yaml",
      "100644 blob {readme}\tx.py"], "its name is 'other', not its folder's name 'evil'"),
    (["100644 blob {readme}\tREADME.md", "100644 blob {unversioned}\tfunction.yaml",
      "100644 blob {readme}\tx.py"], "labels.version must give the function's version"),
])
def test_hostile_function_folders_are_refused(tmp_path: Path, entries: list[str], message: str) -> None:
    hub = git_hub(tmp_path / "hub", "split-dataset")
    good = "apiVersion: runyard/v1\nkind: function\nname: evil\ncode: x.py\nhandler: run\n"
    values = {
        "readme": blob(hub, "# evil\n"), "target": blob(hub, "/etc/passwd"),
        "commit": git(hub, "rev-parse", "HEAD").strip(),
        "big": blob(hub, "x" * (MAX_FILE_BYTES + 1)),
        "definition": blob(hub, good + "labels: {version: '1'}\n"),
        "escape": blob(hub, good.replace("x.py", "../../../etc/passwd") + "labels: {version: '1'}\n"),
        "renamed": blob(hub, good.replace("name: evil", "name: other") + "labels: {version: '1'}\n"),
        "unversioned": blob(hub, good),
    }
    commit_tree(hub, [entry.format(**values) for entry in entries])
    with open_hub(str(hub)) as opened, pytest.raises(RunyardError) as raised:
        opened.function("evil")
    assert message in str(raised.value)
    assert not (tmp_path / "etc").exists()


def test_a_bad_function_folder_name_is_refused(tmp_path: Path) -> None:
    hub = git_hub(tmp_path / "hub", "split-dataset")
    shutil.copytree(hub / "functions/split-dataset", hub / "functions/Not_A_Name")
    commit_all(hub, "a bad name")
    with open_hub(str(hub)) as opened, pytest.raises(RunyardError, match="'Not_A_Name' is not a valid"):
        opened.names()
    bad = re.escape("'../../etc' is not a valid")
    with open_hub(str(hub)) as opened, pytest.raises(RunyardError, match=bad):
        opened.function("../../etc")


def test_the_temporary_clone_is_removed(tmp_path: Path) -> None:
    hub = git_hub(tmp_path / "hub", "split-dataset")
    with open_hub(str(hub)) as opened:
        clone = opened.git_dir  # type: ignore[attr-defined]
        assert clone.is_dir()
    assert not os.path.exists(clone)


def test_the_wheel_carries_every_file_of_the_default_hub() -> None:
    """pyproject's package data globs, resolved as setuptools does, find each hub file."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["runner.hub"]
    package = DEFAULT_FOLDER.parent
    shipped = {path for pattern in patterns for path in package.glob(pattern) if path.is_file()}
    files = {path for path in DEFAULT_FOLDER.rglob("*") if path.is_file() and "__pycache__" not in path.parts}
    assert len(files) == 3 * len(BUILTIN)
    assert files <= shipped


def test_requirements_file_and_command_folders_move_with_the_code(project: Path, tmp_path: Path) -> None:
    hub = make_repo(tmp_path / "hub")
    folder = hub / "functions/tool"
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts/run.sh").write_text("echo hi\n")
    (folder / "requirements.txt").write_text("six==1.16.0\n")
    (folder / "README.md").write_text("# tool\n")
    (folder / "function.yaml").write_text(
        "apiVersion: runyard/v1\nkind: function\nname: tool\ncode: scripts\n"
        "command: [sh, scripts/run.sh, scripts, -x, README.md]\n"
        "environment: {requirements_file: requirements.txt}\nlabels: {version: '2', team: data}\n")
    commit_all(hub, "a tool")
    with open_hub(str(hub)) as opened:
        add_function(project, opened.function("tool"), "tool")
    data = yaml.safe_load((project / "functions/tool.yaml").read_text())
    assert data["code"] == "src/tool/scripts"
    assert data["command"] == ["sh", "src/tool/scripts/run.sh", "src/tool/scripts", "-x",
                               "src/tool/README.md"]
    assert data["environment"] == {"requirements_file": "src/tool/requirements.txt"}
    assert data["labels"]["team"] == "data" and "version" not in data["labels"]
    assert (project / "src/tool/requirements.txt").read_text() == "six==1.16.0\n"


def test_show_prints_the_readme_and_the_definition(run_cli: RunCli) -> None:
    done = run_cli("hub", "show", "train-classifier")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("train-classifier 1.0.0 (hub builtin, sha256:")
    assert "# train-classifier\n" in done.stdout
    assert "  requirements:\n  - scikit-learn==1.5.2\n" in done.stdout  # what its image installs
    assert done.stdout.rstrip().endswith("add it: runyard hub add train-classifier")


def test_a_function_of_too_many_files_or_bytes_is_refused(tmp_path: Path) -> None:
    hub = git_hub(tmp_path / "hub", "split-dataset")
    small, large = blob(hub, "x\n"), blob(hub, "y" * MAX_FILE_BYTES)
    commit_tree(hub, [f"100644 blob {small}\tfile{number}.txt" for number in range(101)])
    with open_hub(str(hub)) as opened, pytest.raises(RunyardError, match="more than 100 files"):
        opened.function("evil")
    commit_tree(hub, [f"100644 blob {large}\tpart{number}.bin" for number in range(5)])
    with open_hub(str(hub)) as opened, pytest.raises(RunyardError, match="the limit is 4194304"):
        opened.function("evil")


def test_update_reads_the_hub_it_was_added_from_unless_told_another(
        run_cli: RunCli, project: Path, tmp_path: Path) -> None:
    first = git_hub(tmp_path / "first", "split-dataset")
    second = git_hub(tmp_path / "second", "split-dataset")
    set_version(second, "split-dataset", "2.0.0")
    assert run_cli("hub", "add", "split-dataset", "--hub", first, "-C", project).returncode == 0
    env = {**os.environ, "RUNYARD_HUB": str(second)}  # for list, show and add; not for update
    done = run_cli("hub", "update", "split-dataset", "-C", project, env=env)
    assert "up to date with split-dataset 1.0.0" in done.stdout, done.stderr
    done = run_cli("hub", "update", "split-dataset", "--hub", second, "--yes", "-C", project)
    assert done.returncode == 0, done.stderr
    labels = yaml.safe_load((project / "functions/split-dataset.yaml").read_text())["labels"]
    assert (labels["hub-source"], labels["hub-version"]) == (str(second.resolve()), "2.0.0")
