"""The in-container runtime, run as the host runs it: `python3 runtime/entry.py spec.json`.

Each test lays out code, work, outputs and input folders in a temporary directory,
writes a spec and checks what the runtime leaves behind: results.json,
artifacts.json, error.json, the artifact files and the exit code.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import importlib.util
import inspect
import json
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

RUNTIME = Path(__file__).resolve().parents[1] / "runner" / "runtime"
ENTRY = RUNTIME / "entry.py"


@dataclass
class Layout:
    """The folders of one run, as the host lays them out."""

    root: Path
    code: Path = field(init=False)
    work: Path = field(init=False)
    outputs: Path = field(init=False)
    data: Path = field(init=False)

    def __post_init__(self) -> None:
        for name in ("code", "work", "outputs", "data"):
            setattr(self, name, self.root / name)
            (self.root / name).mkdir(parents=True)

    def write_code(self, path: str, source: str) -> Path:
        target = self.code / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(source).lstrip(), "utf-8")
        return target

    def input(self, name: str, content: str, filename: str = "") -> dict[str, str]:
        path = self.data / (filename or f"{name}.csv")
        path.write_text(content, "utf-8")
        digest = hashlib.sha256(content.encode()).hexdigest()
        return {"url": f"data/{path.name}", "path": str(path), "hash": f"sha256:{digest}"}

    def spec(self, **overrides: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "uid": "abc123",
            "name": "train",
            "project": "churn",
            "function": "trainer",
            "code": "src/train.py",
            "handler": "train",
            "command": None,
            "params": {},
            "resolved": {},
            "inputs": {},
            "secrets": [],
            "paths": {"code": str(self.code), "work": str(self.work), "outputs": str(self.outputs)},
        }
        spec.update(overrides)
        return spec


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    results: Any
    artifacts: Any
    error: Any


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "run")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text("utf-8")) if path.exists() else None


def run(
    layout: Layout,
    spec: dict[str, Any],
    *,
    entry: Path = ENTRY,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> Outcome:
    spec_path = layout.root / "spec.json"
    spec_path.write_text(json.dumps(spec), "utf-8")
    done = subprocess.run(
        [python, str(entry), str(spec_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=layout.root,
    )
    return Outcome(
        exit_code=done.returncode,
        stdout=done.stdout,
        stderr=done.stderr,
        results=read_json(layout.outputs / "results.json"),
        artifacts=read_json(layout.outputs / "artifacts.json"),
        error=read_json(layout.outputs / "error.json"),
    )


def succeeded(outcome: Outcome) -> Outcome:
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.error is None
    return outcome


HEAVY = ("typing", "logging", "inspect", "dataclasses", "shutil", "traceback")


def test_the_runtime_imports_nothing_heavy_when_a_run_starts(layout: Layout) -> None:
    """Each of HEAVY costs every container's start (some 25 ms in all): the runtime names
    typing's types for mypy only, makes its logger when first used, reads a plain
    function's parameters from its code, and imports the rest where a run needs them.
    (What the interpreter imported before the runtime is not the runtime's.)"""
    layout.write_code(
        "src/train.py",
        f"""
        import sys

        def train(context, lr=0.1):
            return {{name: name in sys.modules for name in {HEAVY!r}}}
        """,
    )
    before = subprocess.run([sys.executable, "-c", f"import json, sys; print(json.dumps("
                             f"[m for m in {HEAVY!r} if m in sys.modules]))"],
                            capture_output=True, text=True, check=True, cwd=layout.root)
    results = succeeded(run(layout, layout.spec())).results
    assert [name for name, loaded in results.items() if loaded] == json.loads(before.stdout)


def _positional_only(a, b=2, /, c=3, *rest, d, e=5, **more): ...


def _defaults_only(x=1, y=None): ...


def _wrapped(context, lr):
    return lr


class _Callable:
    def __call__(self, context, depth=3):
        return depth

    def method(self, lr, *, seed=0):
        return lr


@pytest.mark.parametrize("handler", [
    _positional_only, _defaults_only, lambda context, *args: None, lambda: None,
    functools.wraps(_wrapped)(lambda *args, **kwargs: _wrapped(*args, **kwargs)),
    functools.partial(_positional_only, 1, d=4), _Callable(), _Callable().method, _Callable,
    dict.get,
], ids=["posonly-kwonly-varargs", "defaults", "lambda-varargs", "no-parameters", "wraps",
        "partial", "callable-object", "method", "class", "builtin"])
def test_the_parameters_read_from_code_are_inspects(handler: Any) -> None:
    from runner.runtime.invoke import _EMPTY, parameters

    expected = [(p.name, p.kind.name, _EMPTY if p.default is p.empty else p.default)
                for p in inspect.signature(handler).parameters.values()]
    assert parameters(handler) == expected


# --- handler arguments -------------------------------------------------------------------------


def test_context_params_inputs_and_defaults_are_injected(layout: Layout) -> None:
    layout.write_code(
        "src/train.py",
        """
        import os

        def train(context, raw, lr, depth=3, untouched="default"):
            context.log_results({
                "context": type(context).__name__,
                "lr": lr, "depth": depth, "untouched": untouched,
                "url": raw.url, "str": str(raw), "path": raw.local_path(),
                "content": raw.get().decode(), "hash": raw.hash,
                "same_item": context.get_input("raw").url == raw.url,
                "inputs": sorted(context.inputs),
                "parameters": context.parameters,
                "missing": context.get_param("missing", "fallback"),
                "cwd": os.getcwd(),
                "ids": [context.uid, context.name, context.project],
                "artifact_dir": context.artifact_dir,
            })
        """,
    )
    raw = layout.input("raw", "a,b\n1,2\n", "customers.csv")
    spec = layout.spec(resolved={"lr": 0.1, "depth": 5}, inputs={"raw": raw})
    results = succeeded(run(layout, spec)).results
    assert results == {
        "context": "RunContext",
        "lr": 0.1,
        "depth": 5,
        "untouched": "default",
        "url": "data/customers.csv",
        "str": "data/customers.csv",
        "path": raw["path"],
        "content": "a,b\n1,2\n",
        "hash": raw["hash"],
        "same_item": True,
        "inputs": ["raw"],
        "parameters": {"lr": 0.1, "depth": 5},
        "missing": "fallback",
        "cwd": str(layout.work),
        "ids": ["abc123", "train", "churn"],
        "artifact_dir": str(layout.outputs / "artifacts"),
    }


def test_kwargs_get_the_params_and_inputs_no_parameter_took(layout: Layout) -> None:
    layout.write_code(
        "src/train.py",
        """
        def train(lr, **rest):
            return {"lr": lr, "rest": sorted(rest), "data": type(rest["data"]).__name__,
                    "epochs": rest["epochs"]}
        """,
    )
    spec = layout.spec(
        resolved={"lr": 0.1, "epochs": 5, "seed": 1},
        inputs={"data": layout.input("data", "x\n1\n")},
    )
    assert succeeded(run(layout, spec)).results == {
        "lr": 0.1,
        "rest": ["data", "epochs", "seed"],
        "data": "DataItem",
        "epochs": 5,
    }


def test_a_handler_without_kwargs_ignores_extra_params(layout: Layout) -> None:
    layout.write_code("src/train.py", "def train(lr):\n    return lr * 2\n")
    spec = layout.spec(resolved={"lr": 2, "seed": 42})
    assert succeeded(run(layout, spec)).results == {"return": 4}


def test_a_missing_required_parameter_is_an_error_naming_it(layout: Layout) -> None:
    layout.write_code("src/train.py", "def train(context, lr, epochs):\n    pass\n")
    outcome = run(layout, layout.spec(resolved={"lr": 0.1}))
    assert outcome.exit_code == 1
    assert outcome.error["type"] == "ArgumentError"
    assert "'epochs'" in outcome.error["message"]
    assert "params: lr" in outcome.error["message"]
    assert "'epochs'" in outcome.stderr
    assert "Traceback" not in outcome.stderr
    assert outcome.results == {}
    assert outcome.artifacts == []


def test_async_handlers_are_awaited(layout: Layout) -> None:
    layout.write_code(
        "src/train.py",
        """
        import asyncio

        async def train(lr):
            await asyncio.sleep(0)
            return {"lr": lr}
        """,
    )
    assert succeeded(run(layout, layout.spec(resolved={"lr": 3}))).results == {"lr": 3}


# --- results -----------------------------------------------------------------------------------


def test_a_returned_dict_merges_with_the_logged_results(layout: Layout) -> None:
    layout.write_code(
        "src/train.py",
        """
        def train(context):
            context.log_result("a", 1)
            context.log_results({"b": 2, "a": 0})
            context.log_result("seen", context.results)
            return {"c": 3, "b": 5}
        """,
    )
    results = succeeded(run(layout, layout.spec())).results
    assert results == {"a": 0, "b": 5, "seen": {"a": 0, "b": 2}, "c": 3}


@pytest.mark.parametrize(
    ("returned", "expected"),
    [("0.5", {"return": 0.5}), ("[1, 'a']", {"return": [1, "a"]}), ("None", {})],
)
def test_other_return_values_become_the_return_result(
    layout: Layout, returned: str, expected: dict[str, Any]
) -> None:
    layout.write_code("src/train.py", f"def train():\n    return {returned}\n")
    assert succeeded(run(layout, layout.spec())).results == expected


def test_results_are_made_json_serialisable(layout: Layout) -> None:
    layout.write_code(
        "src/train.py",
        """
        class Scalar:  # as a numpy scalar
            def item(self):
                return 0.25

        class Array:  # as a numpy array: item() would fail, tolist() works
            def item(self):
                raise ValueError("more than one element")
            def tolist(self):
                return [[1, 2], [3, 4]]

        class Opaque:
            def __repr__(self):
                return "<opaque>"

        def train(context):
            context.log_result("scalar", Scalar())
            context.log_result("array", Array())
            context.log_result("opaque", Opaque())
            return {"nested": {1: (Scalar(), {"b", "a"})}}
        """,
    )
    outcome = succeeded(run(layout, layout.spec()))
    assert outcome.results == {
        "scalar": 0.25,
        "array": [[1, 2], [3, 4]],
        "opaque": "<opaque>",
        "nested": {"1": [0.25, ["a", "b"]]},
    }
    assert re.search(r"WARNING result 'opaque': a Opaque is not JSON-serialisable", outcome.stderr)


# --- artifacts ---------------------------------------------------------------------------------


def test_log_artifact_keeps_files_folders_and_bodies(layout: Layout, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("absolute", "utf-8")
    layout.write_code(
        "src/train.py",
        f"""
        import os

        def train(context):
            with open("model.pkl", "wb") as handle:
                handle.write(b"first model")
            context.log_artifact("model", local_path="model.pkl", kind="model")
            os.makedirs("plots/roc")
            with open("plots/roc/curve.txt", "w") as handle:
                handle.write("curve")
            context.log_artifact("plots", local_path="plots")
            stored = context.log_artifact("table", body="a,b\\n1,2\\n", kind="dataset", format="csv")
            context.log_artifact("blob", body=b"\\x00\\x01")
            context.log_artifact("note", local_path={str(elsewhere)!r})
            with open("model-v2.pkl", "wb") as handle:
                handle.write(b"second model")
            context.log_artifact("model", local_path="model-v2.pkl", kind="model")
            return {{"stored": stored}}
        """,
    )
    outcome = succeeded(run(layout, layout.spec()))
    artifacts = layout.outputs / "artifacts"
    assert outcome.artifacts == [
        {"key": "plots", "kind": "file", "path": "plots/plots", "format": None},
        {"key": "table", "kind": "dataset", "path": "table/table.csv", "format": "csv"},
        {"key": "blob", "kind": "file", "path": "blob/blob", "format": None},
        {"key": "note", "kind": "file", "path": "note/elsewhere.txt", "format": "txt"},
        {"key": "model", "kind": "model", "path": "model/model-v2.pkl", "format": "pkl"},
    ]
    assert outcome.results == {"stored": str(artifacts / "table" / "table.csv")}
    assert (artifacts / "plots/plots/roc/curve.txt").read_text() == "curve"
    assert (artifacts / "table/table.csv").read_text() == "a,b\n1,2\n"
    assert (artifacts / "blob/blob").read_bytes() == b"\x00\x01"
    assert (artifacts / "note/elsewhere.txt").read_text() == "absolute"
    assert os.listdir(artifacts / "model") == ["model-v2.pkl"]
    assert (artifacts / "model/model-v2.pkl").read_bytes() == b"second model"


def test_log_artifact_rejects_bad_calls(layout: Layout) -> None:
    layout.write_code(
        "src/train.py",
        """
        def attempt(call):
            try:
                call()
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"
            return "accepted"

        def train(context):
            return {
                "both": attempt(lambda: context.log_artifact("k", local_path="x", body="y")),
                "neither": attempt(lambda: context.log_artifact("k")),
                "missing": attempt(lambda: context.log_artifact("k", local_path="nope.txt")),
                "bad_key": attempt(lambda: context.log_artifact("../up", body="y")),
            }
        """,
    )
    results = succeeded(run(layout, layout.spec())).results
    assert results["both"].startswith("ValueError: log_artifact('k'): give exactly one")
    assert results["neither"] == results["both"]
    assert results["missing"].startswith("FileNotFoundError: artifact 'k'")
    assert results["bad_key"].startswith("ValueError: artifact key '../up' is not valid")
    assert read_json(layout.outputs / "artifacts.json") == []


def test_files_written_straight_into_the_artifact_dir_are_artifacts(layout: Layout) -> None:
    layout.write_code(
        "src/train.py",
        """
        import os

        def train(context):
            context.log_artifact("model", body="weights", format="bin")
            with open(os.path.join(context.artifact_dir, "summary.txt"), "w") as handle:
                handle.write("loose")
        """,
    )
    assert succeeded(run(layout, layout.spec())).artifacts == [
        {"key": "model", "kind": "file", "path": "model/model.bin", "format": "bin"},
        {"key": "summary", "kind": "file", "path": "summary.txt", "format": "txt"},
    ]


# --- params by level, secrets, logging ---------------------------------------------------------


def test_get_params_reads_each_level_on_its_own(layout: Layout) -> None:
    layout.write_code(
        "src/train.py",
        """
        def train(context, test_size):
            try:
                context.get_params("galaxy")
            except ValueError as exc:
                unknown = str(exc)
            return {
                "arg": test_size,
                "resolved": context.get_param("test_size"),
                "pipeline": context.get_params("pipeline"),
                "step": context.get_params("step"),
                "project": context.get_params("project"),
                "job": context.get_params("job"),
                "unknown": unknown,
            }
        """,
    )
    levels = {
        "project": {"seed": 42},
        "pipeline": {"test_size": 0.2},
        "step": {"test_size": 0.3, "sample": 100},
    }
    spec = layout.spec(params=levels, resolved={"seed": 42, "test_size": 0.3, "sample": 100})
    results = succeeded(run(layout, spec)).results
    assert results["arg"] == results["resolved"] == 0.3
    assert results["pipeline"] == {"test_size": 0.2}
    assert results["step"] == {"test_size": 0.3, "sample": 100}
    assert results["project"] == {"seed": 42}
    assert results["job"] == {}
    assert "unknown parameter level 'galaxy'" in results["unknown"]


def test_only_the_given_secrets_can_be_read(layout: Layout) -> None:
    """Secrets come as files, only those the spec names; the environment is never read."""
    layout.write_code(
        "src/train.py",
        """
        def train(context):
            return {
                "listed": context.get_secret("WAREHOUSE_TOKEN"),
                "unlisted": context.get_secret("OTHER_TOKEN", "default"),
                "listed_unset": context.get_secret("UNSET_TOKEN", "default"),
            }
        """,
    )
    secrets = layout.root / "secrets"
    secrets.mkdir()
    (secrets / "WAREHOUSE_TOKEN").write_text("s3cret")
    (secrets / "OTHER_TOKEN").write_text("nope")
    env = {**os.environ, "OTHER_TOKEN": "from-env", "UNSET_TOKEN": "from-env"}
    spec = layout.spec(secrets=["WAREHOUSE_TOKEN", "UNSET_TOKEN"])
    spec["paths"]["secrets"] = str(secrets)
    outcome = succeeded(run(layout, spec, env=env))
    assert outcome.results == {"listed": "s3cret", "unlisted": "default", "listed_unset": "default"}


def test_a_run_ends_itself_at_its_deadline(layout: Layout) -> None:
    """With no runner left to enforce the timeout, the runtime ends the run (and what it
    started) at the spec's deadline."""
    layout.write_code(
        "src/train.py",
        """
        import subprocess, time
        def train(context):
            subprocess.Popen(["sleep", "60"])
            print("started", flush=True)
            time.sleep(60)
        """,
    )
    started = time.monotonic()
    outcome = run(layout, layout.spec(deadline=1.5))
    assert time.monotonic() - started < 20
    assert outcome.exit_code == 137
    assert "passed its deadline" in outcome.stderr


def test_the_deadline_watch_wakes_when_the_run_ends() -> None:
    """A run with a deadline ends when its handler does, not at the next poll: the
    supervisor waits on the child's pidfd."""
    from runner.runtime.main import _end_of

    child = os.fork()
    if child == 0:
        time.sleep(0.2)
        os._exit(3)
    ended = _end_of(child)
    assert ended is not None, "this kernel offers pidfds"
    try:
        assert select.select([ended], [], [], 0)[0] == []  # still running
        assert select.select([ended], [], [], 30)[0] == [ended]
    finally:
        os.close(ended)
        assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 3


def test_output_and_log_lines_reach_the_host(layout: Layout) -> None:
    layout.write_code(
        "src/train.py",
        """
        import sys

        def train(context):
            print("to stdout")
            print("to stderr", file=sys.stderr)
            context.logger.info("from the logger")
        """,
    )
    outcome = succeeded(run(layout, layout.spec()))
    assert outcome.stdout == "to stdout\n"
    assert "to stderr\n" in outcome.stderr
    log_line = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO from the logger$"
    assert re.search(log_line, outcome.stderr, re.MULTILINE)


def test_as_df_reads_the_input_or_says_pandas_is_missing(layout: Layout) -> None:
    layout.write_code(
        "src/train.py",
        """
        def train(data):
            try:
                return {"shape": list(data.as_df().shape)}
            except ImportError as exc:
                return {"error": str(exc)}
        """,
    )
    spec = layout.spec(inputs={"data": layout.input("data", "a,b\n1,2\n3,4\n")})
    results = succeeded(run(layout, spec)).results
    if importlib.util.find_spec("pandas") is None:
        assert "as_df() needs pandas" in results["error"]
    else:
        assert results == {"shape": [2, 2]}


# --- failures ----------------------------------------------------------------------------------


def test_an_exception_keeps_what_was_logged_before_it(layout: Layout) -> None:
    layout.write_code(
        "src/train.py",
        """
        def train(context):
            context.log_result("before", 1)
            context.log_artifact("partial", body="half")
            raise ValueError("bad data")
        """,
    )
    outcome = run(layout, layout.spec())
    assert outcome.exit_code == 1
    assert outcome.error == {"type": "ValueError", "message": "bad data"}
    assert outcome.results == {"before": 1}
    assert outcome.artifacts == [
        {"key": "partial", "kind": "file", "path": "partial/partial", "format": None}
    ]
    assert "Traceback (most recent call last)" in outcome.stderr
    assert 'train.py", line 4, in train' in outcome.stderr
    assert "ValueError: bad data" in outcome.stderr
    assert str(RUNTIME / "main.py") not in outcome.stderr  # the runtime's frames are left out


@pytest.mark.parametrize(
    ("argument", "exit_code", "error"),
    [
        ("", 0, None),
        ("0", 0, None),
        ("3", 3, {"type": "SystemExit", "message": "the handler exited with code 3"}),
        ("'gave up'", 1, {"type": "SystemExit", "message": "gave up"}),
    ],
)
def test_system_exit_from_the_handler_sets_the_exit_code(
    layout: Layout, argument: str, exit_code: int, error: dict[str, str] | None
) -> None:
    layout.write_code(
        "src/train.py",
        f"import sys\n\ndef train(context):\n    context.log_result('ran', True)\n    sys.exit({argument})\n",
    )
    outcome = run(layout, layout.spec())
    assert outcome.exit_code == exit_code
    assert outcome.error == error
    assert outcome.results == {"ran": True}


def test_a_stop_request_still_leaves_the_outputs(layout: Layout) -> None:
    layout.write_code(
        "src/train.py",
        """
        import time

        def train(context):
            context.log_result("epoch", 1)
            print("ready", flush=True)
            time.sleep(30)
        """,
    )
    spec_path = layout.root / "spec.json"
    spec_path.write_text(json.dumps(layout.spec()), "utf-8")
    with subprocess.Popen(
        [sys.executable, str(ENTRY), str(spec_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 128 + signal.SIGTERM
    assert read_json(layout.outputs / "results.json") == {"epoch": 1}
    assert read_json(layout.outputs / "error.json")["type"] == "Terminated"


def test_an_import_error_in_user_code_shows_only_the_users_frames(layout: Layout) -> None:
    layout.write_code("src/train.py", "import not_installed_anywhere\n\ndef train():\n    pass\n")
    outcome = run(layout, layout.spec())
    assert outcome.exit_code == 1
    assert outcome.error["type"] == "ModuleNotFoundError"
    first_frame = outcome.stderr.split("Traceback (most recent call last):\n", 1)[1].splitlines()[0]
    assert first_frame.endswith('train.py", line 1, in <module>')


def test_an_unknown_handler_is_an_error_naming_it(layout: Layout) -> None:
    layout.write_code("src/train.py", "def fit():\n    pass\n")
    outcome = run(layout, layout.spec(handler="train"))
    assert outcome.exit_code == 1
    assert outcome.error["type"] == "HandlerError"
    assert "train has no 'train'" in outcome.error["message"]


def test_an_unreadable_spec_is_a_usage_error(layout: Layout) -> None:
    done = subprocess.run(
        [sys.executable, str(ENTRY), str(layout.root / "missing.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "cannot read the spec" in done.stderr


# --- where the code is -------------------------------------------------------------------------


@pytest.mark.parametrize("handler", ["model.train", "train"])
def test_a_package_handler_by_module_and_function(layout: Layout, handler: str) -> None:
    layout.write_code("src/churn/__init__.py", "from churn.model import train\n")
    layout.write_code("src/churn/util.py", "FACTOR = 10\n")
    layout.write_code(
        "src/churn/model.py",
        """
        from churn.util import FACTOR
        from .util import FACTOR as SAME

        def train(lr):
            return {"scaled": lr * FACTOR * SAME, "module": __name__}
        """,
    )
    spec = layout.spec(code="src/churn", handler=handler, resolved={"lr": 2})
    assert succeeded(run(layout, spec)).results == {"scaled": 200, "module": "churn.model"}


def test_a_file_in_a_package_can_import_relatively(layout: Layout) -> None:
    layout.write_code("src/churn/__init__.py", "")
    layout.write_code("src/churn/util.py", "VALUE = 7\n")
    layout.write_code(
        "src/churn/job.py",
        "from .util import VALUE\n\ndef run():\n    return {'value': VALUE, 'name': __name__}\n",
    )
    spec = layout.spec(code="src/churn/job.py", handler="run")
    assert succeeded(run(layout, spec)).results == {"value": 7, "name": "churn.job"}


@pytest.mark.parametrize(("code", "folder"), [("src", "src/"), (".", "")])
def test_a_plain_folder_handler_by_module_and_function(layout: Layout, code: str, folder: str) -> None:
    layout.write_code(f"{folder}helpers.py", "VALUE = 5\n")
    layout.write_code(
        f"{folder}jobs.py",
        "import helpers\n\ndef run():\n    return {'value': helpers.VALUE, 'name': __name__}\n",
    )
    spec = layout.spec(code=code, handler="jobs.run")
    expected = {"value": 5, "name": "src.jobs" if folder else "jobs"}
    assert succeeded(run(layout, spec)).results == expected


def test_user_modules_named_like_the_runtimes_are_the_users(layout: Layout) -> None:
    layout.write_code("src/context.py", "WHO = 'user context'\n")
    layout.write_code("src/entry.py", "WHO = 'user entry'\n")
    layout.write_code(
        "src/train.py",
        "import context, entry\n\ndef train():\n    return [context.WHO, entry.WHO]\n",
    )
    results = succeeded(run(layout, layout.spec())).results
    assert results == {"return": ["user context", "user entry"]}


def test_the_runtime_folder_gets_no_bytecode(layout: Layout, tmp_path: Path) -> None:
    read_only = tmp_path / "mounted" / "runtime"
    shutil.copytree(RUNTIME, read_only, ignore=shutil.ignore_patterns("__pycache__"))
    layout.write_code("src/helper.py", "VALUE = 1\n")
    layout.write_code("src/train.py", "from helper import VALUE\n\ndef train():\n    return VALUE\n")
    make_read_only(read_only)
    try:
        outcome = succeeded(run(layout, layout.spec(), entry=read_only / "entry.py"))
    finally:
        make_writable(read_only)
    assert outcome.results == {"return": 1}
    assert glob.glob(str(read_only / "**" / "__pycache__"), recursive=True) == []
    assert glob.glob(str(read_only / "**" / "*.pyc"), recursive=True) == []


def make_read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def make_writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


# --- command functions -------------------------------------------------------------------------

REPORT_SCRIPT = """
    set -eu
    out="$RUNYARD_OUTPUTS"
    {
      echo "title=$RUNYARD_PARAM_TITLE"
      echo "test_size=$RUNYARD_PARAM_TEST_SIZE"
      echo "flag=$RUNYARD_PARAM_FLAG"
      echo "layers=$RUNYARD_PARAM_LAYERS"
      echo "metrics=$(cat "$RUNYARD_INPUT_METRICS")"
      echo "params=$(cat "$RUNYARD_PARAMS")"
      echo "cwd=$(pwd)"
    } > "$out/artifacts/report.md"
    mkdir "$out/artifacts/plots"
    echo plot > "$out/artifacts/plots/roc.txt"
    echo '{"report_lines": 7}' > "$out/results.json"
    echo "wrote the report"
"""


def command_spec(layout: Layout, **overrides: Any) -> dict[str, Any]:
    layout.write_code("scripts/report.sh", REPORT_SCRIPT)
    return layout.spec(
        **{
            "code": "scripts/report.sh",
            "handler": None,
            "command": ["sh", "scripts/report.sh"],
            "resolved": {"title": "Churn model", "test-size": 0.25, "flag": True, "layers": [1, 2]},
            "inputs": {"metrics": layout.input("metrics", '{"f1": 0.9}', "metrics.json")},
            **overrides,
        }
    )


def test_a_command_gets_params_and_inputs_and_leaves_results(layout: Layout) -> None:
    outcome = succeeded(run(layout, command_spec(layout)))
    assert outcome.stdout == "wrote the report\n"
    assert outcome.results == {"report_lines": 7}
    assert outcome.artifacts == [
        {"key": "plots", "kind": "file", "path": "plots", "format": None},
        {"key": "report", "kind": "file", "path": "report.md", "format": "md"},
    ]
    params = {"title": "Churn model", "test-size": 0.25, "flag": True, "layers": [1, 2]}
    assert read_json(layout.outputs / "params.json") == params
    report = (layout.outputs / "artifacts" / "report.md").read_text("utf-8").splitlines()
    assert report == [
        "title=Churn model",
        "test_size=0.25",
        "flag=true",
        "layers=[1, 2]",
        'metrics={"f1": 0.9}',
        f"params={json.dumps(params, indent=2)}".splitlines()[0],
        *json.dumps(params, indent=2).splitlines()[1:],
        f"cwd={layout.work}",
    ]


def test_a_command_uses_the_hosts_params_file(layout: Layout) -> None:
    given = layout.root / "params.json"
    given.write_text('{"from": "host"}', "utf-8")
    spec = command_spec(layout)
    spec["paths"]["params"] = str(given)
    succeeded(run(layout, spec))
    assert 'params={"from": "host"}' in (layout.outputs / "artifacts/report.md").read_text()
    assert not (layout.outputs / "params.json").exists()


def test_a_failing_command_passes_its_exit_code_on(layout: Layout) -> None:
    layout.write_code(
        "scripts/fail.sh",
        """
        echo '{"done": 1}' > "$RUNYARD_OUTPUTS/results.json"
        echo partial > "$RUNYARD_ARTIFACTS/partial.log"
        exit 3
        """,
    )
    spec = layout.spec(code="scripts/fail.sh", handler=None, command=["sh", "scripts/fail.sh"])
    outcome = run(layout, spec)
    assert outcome.exit_code == 3
    assert outcome.results == {"done": 1}
    assert outcome.artifacts == [{"key": "partial", "kind": "file", "path": "partial.log", "format": "log"}]
    assert outcome.error == {
        "type": "CommandFailed",
        "message": "the command 'sh' exited with code 3",
    }


def test_a_command_results_file_that_is_not_an_object_is_ignored(layout: Layout) -> None:
    layout.write_code("scripts/odd.sh", "echo '[1, 2]' > \"$RUNYARD_OUTPUTS/results.json\"\n")
    spec = layout.spec(code="scripts/odd.sh", handler=None, command=["sh", "scripts/odd.sh"])
    outcome = succeeded(run(layout, spec))
    assert outcome.results == {}
    assert "not a JSON object" in outcome.stderr


def test_a_missing_program_is_an_error(layout: Layout) -> None:
    spec = layout.spec(code=None, handler=None, command=["no-such-program-runyard"])
    outcome = run(layout, spec)
    assert outcome.exit_code == 127
    assert outcome.error["type"] == "CommandFailed"
    assert "no-such-program-runyard" in outcome.error["message"]


# --- older Pythons -----------------------------------------------------------------------------


def find_python39() -> str | None:
    """A Python 3.9 interpreter that really runs (a pyenv shim may only say it is missing)."""
    candidates = [
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9"))),
        shutil.which("python3.9"),
    ]
    for candidate in filter(None, candidates):
        check = [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 9)"]
        if subprocess.run(check, capture_output=True, timeout=30).returncode == 0:
            return candidate
    return None


PYTHON39 = find_python39()


@pytest.mark.skipif(PYTHON39 is None, reason="no Python 3.9 on this machine")
def test_the_runtime_runs_on_python_3_9(layout: Layout) -> None:
    assert PYTHON39 is not None
    layout.write_code(
        "src/train.py",
        """
        def train(context, raw, lr, **rest):
            context.log_artifact("copy", local_path=raw.local_path())
            return {"lr": lr, "rest": sorted(rest), "py": __import__("sys").version_info[:2]}
        """,
    )
    spec = layout.spec(resolved={"lr": 1, "seed": 2}, inputs={"raw": layout.input("raw", "x")})
    outcome = succeeded(run(layout, spec, python=PYTHON39))
    assert outcome.results == {"lr": 1, "rest": ["seed"], "py": [3, 9]}
    assert outcome.artifacts == [{"key": "copy", "kind": "file", "path": "copy/raw.csv", "format": "csv"}]
    assert succeeded(run(layout, command_spec(layout), python=PYTHON39)).results == {"report_lines": 7}


def test_a_command_reads_its_secrets_from_their_folder(layout: Layout) -> None:
    secrets = layout.root / "secrets"
    secrets.mkdir()
    (secrets / "TOKEN").write_text("s3cret")
    layout.write_code("run.sh", 'echo "{\\"token\\": \\"$(cat "$RUNYARD_SECRETS/TOKEN")\\"}" '
                                '> "$RUNYARD_OUTPUTS/results.json"\n')
    spec = layout.spec(code="run.sh", handler=None, command=["sh", "run.sh"], secrets=["TOKEN"])
    spec["paths"]["secrets"] = str(secrets)
    assert succeeded(run(layout, spec)).results == {"token": "s3cret"}
