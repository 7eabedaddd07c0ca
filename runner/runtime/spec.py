"""The run spec the host writes, read and checked before anything runs."""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False  # typing is not imported at run time: it costs each run's start
if TYPE_CHECKING:
    from typing import Any


# The parameter levels, later ones winning; runner/run/task.py has the same (a test keeps them so).
LEVELS = ("project", "pipeline", "job", "override", "step")
NOTEBOOK_SUFFIX = ".ipynb"


class RunError(Exception):
    """A problem with the run itself, told to the user without a traceback."""

    exit_code = 1


class SpecError(RunError):
    """The spec file is missing, not JSON, or lacks what the runtime needs."""


# The spec's parts are plain classes: dataclasses imports inspect, and the runtime's
# imports are part of every run's start.


class InputRef:
    def __init__(self, name: str, url: str, path: str, hash: str | None) -> None:
        self.name, self.url, self.path, self.hash = name, url, path, hash


class Paths:
    def __init__(self, code: str | None, work: str, outputs: str, params: str | None,
                 secrets: str | None = None) -> None:
        self.code, self.work, self.outputs = code, work, outputs
        self.params, self.secrets = params, secrets

    @property
    def artifacts(self) -> str:
        return os.path.join(self.outputs, "artifacts")


class Spec:
    def __init__(self, *, uid: str, name: str, project: str, function: str, code: str | None,
                 handler: str | None, command: tuple[str, ...] | None,
                 levels: dict[str, dict[str, Any]], resolved: dict[str, Any],
                 inputs: dict[str, InputRef], secrets: tuple[str, ...], paths: Paths,
                 deadline: float | None = None) -> None:
        self.uid, self.name, self.project, self.function = uid, name, project, function
        self.code, self.handler, self.command = code, handler, command
        self.levels, self.resolved, self.inputs = levels, resolved, inputs
        self.secrets, self.paths = secrets, paths
        self.deadline = deadline  # seconds: the run ends itself then, runner or not

    @property
    def notebook(self) -> bool:
        """Whether the code is a notebook, run cell by cell (notebook.py) instead of a handler."""
        return self.command is None and is_notebook(self.code)


def is_notebook(code: str | None) -> bool:
    return code is not None and code.endswith(NOTEBOOK_SUFFIX)


def load_spec(path: str) -> Spec:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise SpecError(f"cannot read the spec {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise SpecError(f"the spec {path} is not valid JSON: {exc}") from exc
    return parse_spec(_mapping(data, "the spec"))


def parse_spec(data: dict[str, Any]) -> Spec:
    name = _text(data, "name")
    command = _command(data.get("command"))
    code = _maybe_text(data, "code")
    handler = _maybe_text(data, "handler")
    if command is None and (code is None or (handler is None and not is_notebook(code))):
        raise SpecError("the spec needs a command, a notebook as code, or both code and handler")
    return Spec(
        uid=_text(data, "uid"),
        name=name,
        project=_maybe_text(data, "project") or "",
        function=_maybe_text(data, "function") or name,
        code=code,
        handler=handler,
        command=command,
        levels=_levels(data.get("params")),
        resolved=_mapping(data.get("resolved", {}), "resolved"),
        inputs=_inputs(data.get("inputs")),
        secrets=tuple(_strings(data.get("secrets", []), "secrets")),
        paths=_paths(_mapping(data.get("paths"), "paths"), needs_code=command is None),
        deadline=_deadline(data.get("deadline")),
    )


def _deadline(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise SpecError(f"deadline must be a positive number of seconds, got {value!r}")
    return float(value)


def _mapping(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise SpecError(f"the spec needs a non-empty string {key!r}, got {value!r}")
    return value


def _maybe_text(data: dict[str, Any], key: str) -> str | None:
    return None if data.get(key) is None else _text(data, key)


def _strings(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SpecError(f"{what} must be a list of strings, got {value!r}")
    return list(value)


def _command(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    command = _strings(value, "command")
    if not command:
        raise SpecError("command must not be empty")
    return tuple(command)


def _levels(value: object) -> dict[str, dict[str, Any]]:
    levels = _mapping(value if value is not None else {}, "params")
    return {level: _mapping(params, f"params.{level}") for level, params in levels.items()}


def _inputs(value: object) -> dict[str, InputRef]:
    inputs = _mapping(value if value is not None else {}, "inputs")
    return {name: _input(name, _mapping(ref, f"inputs.{name}")) for name, ref in inputs.items()}


def _input(name: str, ref: dict[str, Any]) -> InputRef:
    path = _text(ref, "path")
    url = ref.get("url")
    digest = ref.get("hash")
    return InputRef(
        name=name,
        url=url if isinstance(url, str) and url else path,
        path=os.path.abspath(path),
        hash=digest if isinstance(digest, str) else None,
    )


def _paths(data: dict[str, Any], needs_code: bool) -> Paths:
    code = _text(data, "code") if needs_code else _maybe_text(data, "code")
    params = _maybe_text(data, "params")
    secrets = _maybe_text(data, "secrets")
    return Paths(
        code=os.path.abspath(code) if code else None,
        work=os.path.abspath(_text(data, "work")),
        outputs=os.path.abspath(_text(data, "outputs")),
        params=os.path.abspath(params) if params else None,
        secrets=os.path.abspath(secrets) if secrets else None,
    )
