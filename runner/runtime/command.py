"""Command functions: any program, fed through environment variables and params.json.

The command runs in the work folder with, besides the runtime's environment:
    RUNYARD_PARAM_<NAME>   each resolved param (JSON for lists and dicts, true/false)
    RUNYARD_INPUT_<NAME>   each input's local path
    RUNYARD_PARAMS         a JSON file of the resolved params
    RUNYARD_OUTPUTS, RUNYARD_ARTIFACTS, RUNYARD_WORK, RUNYARD_CODE,
    RUNYARD_RUN_UID, RUNYARD_RUN_NAME, RUNYARD_PROJECT
    RUNYARD_SECRETS        the folder of the secrets the function was given, a file each
It may write <outputs>/results.json (a JSON object) and files or folders under
<outputs>/artifacts/, each of which becomes an artifact named after it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

from .context import RunLog
from .jsonable import to_jsonable, write_json
from .outputs import OutputStore
from .spec import RunError, Spec

# How long a command gets to stop after the run is asked to stop, before it is killed.
_STOP_GRACE_SECONDS = 5.0


class CommandFailed(RunError):
    """The command ran and exited with a non-zero code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run_command(spec: Spec, store: OutputStore, log: RunLog) -> None:
    assert spec.command is not None
    argv = [_code_relative(arg, spec, first=i == 0) for i, arg in enumerate(spec.command)]
    env = command_env(spec, _params_file(spec, log))
    code = _execute(argv, spec.paths.work, env)
    store.load_results_file()
    if code != 0:
        raise CommandFailed(_exit_message(argv[0], code), 128 - code if code < 0 else code)


def env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(to_jsonable(value, lambda _: None, "param"))
    return str(value)


def command_env(spec: Spec, params_path: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RUNYARD_RUN_UID=spec.uid,
        RUNYARD_RUN_NAME=spec.name,
        RUNYARD_PROJECT=spec.project,
        RUNYARD_CODE=spec.paths.code or "",
        RUNYARD_WORK=spec.paths.work,
        RUNYARD_OUTPUTS=spec.paths.outputs,
        RUNYARD_ARTIFACTS=spec.paths.artifacts,
        RUNYARD_PARAMS=params_path,
        RUNYARD_SECRETS=spec.paths.secrets or "",
    )
    env.setdefault("PYTHONUNBUFFERED", "1")
    for name, value in spec.resolved.items():
        env[f"RUNYARD_PARAM_{env_name(name)}"] = env_value(value)
    for name, ref in spec.inputs.items():
        env[f"RUNYARD_INPUT_{env_name(name)}"] = ref.path
    return env


def _params_file(spec: Spec, log: RunLog) -> str:
    """The host's params file when it wrote one, else <outputs>/params.json."""
    given = spec.paths.params
    if given is not None and os.path.isfile(given):
        return given
    if given is not None:
        log.warning(f"paths.params {given} does not exist; writing the params to outputs")
    path = os.path.join(spec.paths.outputs, "params.json")
    write_json(path, to_jsonable(spec.resolved, log.warning, "params"))
    return path


def _code_relative(arg: str, spec: Spec, first: bool) -> str:
    """A repo-relative path in the command (`scripts/report.sh`) as its path in the code.

    The command runs in the scratch work folder, so such paths would not resolve
    there. A bare program name (`sh`) stays a name to look up on PATH.
    """
    code = spec.paths.code
    if code is None or os.path.isabs(arg) or arg.startswith("-") or (first and "/" not in arg):
        return arg
    in_code = os.path.join(code, arg)
    if os.path.exists(in_code) and not os.path.exists(os.path.join(spec.paths.work, arg)):
        return in_code
    return arg


def _execute(argv: list[str], cwd: str, env: dict[str, str]) -> int:
    try:
        process = subprocess.Popen(argv, cwd=cwd, env=env)
    except OSError as exc:
        raise CommandFailed(f"cannot start the command {argv[0]!r}: {exc.strerror}", 127) from exc
    with process:
        try:
            return process.wait()
        except BaseException:
            _stop(process)
            raise


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(_STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()


def _exit_message(program: str, code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the command {program!r} was killed by {name}"
    return f"the command {program!r} exited with code {code}"
