"""Installing runyard's `post-receive` hook into a bare repository."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.errors import RunyardError
from runner.git import set_config
from runner.project.policy import GIT_KEYS, Policy, policy_from, read_policy

MARKER = "# installed by runyard"
LOG_LIMIT = 1024 * 1024  # on-push.log is rotated to on-push.log.1 past this many bytes


def install_hook(repo: Path, prefix: str = "") -> Path:
    """Write `hooks/post-receive`: it hands the push to `runyard on-push` in the
    background, so the push returns at once; output goes to runyard/on-push.log, which
    the hook rotates to on-push.log.1 (one old file kept) once it is past LOG_LIMIT."""
    check_bare(repo)
    hooks = repo / "hooks"
    hook = hooks / "post-receive"
    if hook.exists() and MARKER not in hook.read_text(errors="replace"):
        raise RunyardError(f"{hook} exists and is not runyard's: merge it by hand, running\n"
                           f"  {_command(prefix)} < the hook's input")
    hooks.mkdir(exist_ok=True)
    hook.write_text(f"""#!/bin/sh
{MARKER}: hand the push to the runner, in the background.
log="$(pwd)/runyard/on-push.log"
mkdir -p "$(pwd)/runyard"
if [ -f "$log" ] && [ "$(wc -c <"$log")" -gt {LOG_LIMIT} ]; then
  mv -f "$log" "$log.1" 2>/dev/null
fi
input=$(cat)
printf '%s\\n' "$input" | nohup {_command(prefix)} -C "$(pwd)" >>"$log" 2>&1 &
echo "runyard: processing the push in the background (log: $log)"
""")
    hook.chmod(0o755)
    return hook


def check_bare(repo: Path) -> None:
    if not (repo / "objects").is_dir() or not (repo / "HEAD").is_file():
        raise RunyardError(f"{repo} is not a bare git repository (no objects/ and HEAD)")


def _command(prefix: str) -> str:
    args = [sys.executable, "-m", "runner", "on-push"]
    if prefix:
        args += ["--path", prefix]
    return " ".join(shlex.quote(a) for a in args)


def configure(repo: Path, settings: Mapping[str, Sequence[str]]) -> Policy:
    """Write the operator's settings (`allowSecret` -> values, ...) into the repository's git
    config, replacing earlier values of the same keys; return the policy now in force."""
    check_bare(repo)
    given = {key: list(values) for key, values in settings.items() if values}
    policy_from({key.lower(): values for key, values in given.items()}, "the options")  # check first
    for key, values in given.items():
        assert key.lower() in GIT_KEYS, key
        set_config(repo, f"runyard.{key}", values)
    return read_policy(repo)
