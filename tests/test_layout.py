"""The house is as drawn (README, "How the code is laid out"): each folder of `runner/`
a stage of the flow, and imports that only go down it.

    cli, api  ->  triggers  ->  run  ->  build, plan  ->  project
    cli  ->  hub  ->  project                      (the function hub: a source of project files)
                  views  ->  record  ->  project
    runtime: alone (stdlib only; it runs inside images that have no runyard)

`runner.errors`, `runner.git`, `runner.forked`, `runner.files` and `runner.frozen` are beneath
every stage.
Imports inside functions (lazy imports) are the command line's alone: elsewhere a module's
imports are at its top, where a reader sees what it depends on.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[1] / "runner"
BASE = {"errors", "git", "forked", "files", "frozen"}
HUB_CONTENT = RUNNER / "hub" / "default"  # the functions runyard ships: code of projects, not of runyard
# what each stage may import of the package, besides itself and BASE
MAY_IMPORT = {
    "project": set(),
    "plan": {"project"},
    "hub": {"project"},  # a source of project files: reads hubs, writes and checks the project
    "build": {"project"},
    "record": {"project"},
    "views": {"record", "project"},
    "run": {"project", "plan", "build", "record"},
    "triggers": {"run", "plan", "build", "record", "project", "views"},
    "api": {"run", "plan", "build", "record", "project", "views", "triggers"},
    "cli": {"api", "triggers", "run", "plan", "build", "record", "project", "views", "hub"},
    "package": {"api", "cli"},  # runner/__init__.py, runner/__main__.py
}


def _stage(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "package"
    return parts[1].removesuffix(".py")


def _modules() -> list[Path]:
    return sorted(path for path in RUNNER.rglob("*.py")
                  if "runtime" not in path.parts and HUB_CONTENT not in path.parents)


def _module_name(path: Path) -> str:
    relative = path.relative_to(RUNNER.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.AST) -> list[tuple[str, int, bool]]:
    """(imported runner module, line, inside a function) of every import."""
    found = []
    functions = [node for node in ast.walk(tree)
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(sub) for function in functions for sub in ast.walk(function)}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name == "runner" or name.startswith("runner."):
                found.append((name, node.lineno, id(node) in nested))
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(RUNNER)))
def test_imports_go_down_the_flow(path: Path) -> None:
    module = _module_name(path)
    stage = _stage(module) if module != "runner.api" else "api"
    wrong = []
    for name, line, lazy in _imports(ast.parse(path.read_text("utf-8"))):
        target = "api" if name == "runner.api" else _stage(name)
        if name in ("runner", "runner.api") and stage == "package":
            continue
        if target == "package" or target in BASE or target == stage:
            pass
        elif target not in MAY_IMPORT[stage]:
            wrong.append(f"line {line}: {stage} imports {name} ({target})")
        if lazy and stage not in ("cli", "package"):
            wrong.append(f"line {line}: imports {name} inside a function (only cli may)")
    assert wrong == []


def test_the_runtime_imports_nothing_of_the_package() -> None:
    for path in sorted((RUNNER / "runtime").rglob("*.py")):
        for name, line, _ in _imports(ast.parse(path.read_text("utf-8"))):
            pytest.fail(f"{path.name}:{line} imports {name}")


def test_every_stage_says_what_it_does_and_may_import() -> None:
    for folder in ("project", "hub", "build", "run", "record", "views", "triggers", "cli", "runtime"):
        doc = ast.get_docstring(ast.parse((RUNNER / folder / "__init__.py").read_text("utf-8")))
        assert doc, folder
        assert "import" in doc, f"{folder}/__init__.py does not say what it may import"


def test_the_rule_can_fail() -> None:
    """The walk finds a wrong arrow and a lazy import where there is one."""
    tree = ast.parse("from runner.run.session import x\n"
                     "def f():\n    from runner.project import model\n")
    assert [(name, lazy) for name, _, lazy in _imports(tree)] == [
        ("runner.run.session", False), ("runner.run.session.x", False),
        ("runner.project", True), ("runner.project.model", True)]
    assert "run" not in MAY_IMPORT["project"] and "run" not in MAY_IMPORT["build"]


def test_the_parameter_levels_have_one_order() -> None:
    """The runtime cannot import the package, so it has its own copy: the same."""
    from runner.run.task import LEVELS

    tree = ast.parse((RUNNER / "runtime" / "spec.py").read_text("utf-8"))
    (runtime,) = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == "LEVELS" for t in node.targets)]
    assert runtime == LEVELS
