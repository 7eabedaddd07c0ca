"""runyard's hooks of a bare repository: `post-receive` hands each push to the runner,
`pre-receive` refuses a push that would write the runner's records."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from runner.errors import RunyardError
from runner.git import ZERO, list_tree, set_config
from runner.project.policy import GIT_KEYS, Policy, policy_from, read_policy
from runner.record.results import TOP_FOLDERS

MARKER = "# installed by runyard"
LOG_LIMIT = 1024 * 1024  # on-push.log is rotated to on-push.log.1 past this many bytes
RECORDS = frozenset({"runs", "index", "pushes"})  # with only runyard's top folders: records


class RefUpdate(NamedTuple):
    old: str | None
    new: str
    ref: str


def parse_updates(text: str) -> list[RefUpdate]:
    """`OLD NEW REF` lines, as git gives them to its receive hooks."""
    updates = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise RunyardError(f"line {number} of the input is not `OLD NEW REF`: {line!r}")
        old, new, ref = parts
        updates.append(RefUpdate(None if old == ZERO else old, new, ref))
    return updates


def record_writes(git_dir: Path, updates: Sequence[RefUpdate]) -> list[str]:
    """Why each of `updates` that touches a results branch (makes, moves or deletes a ref
    whose tree is runyard's records, before or after) may not: the runner writes those
    itself, and what a push put there would be taken for what ran (a memoized run's
    results, an artifact's hash)."""
    return [f"{update.ref}: a results branch is written by runyard's runner only; "
            "a push may not make, change or delete one"
            for update in updates if update.ref.startswith("refs/heads/")
            and any(_holds_records(git_dir, commit) for commit in (update.old, update.new))]


def _holds_records(git_dir: Path, commit: str | None) -> bool:
    """Whether `commit`'s tree is records (one that cannot be read is taken for records)."""
    if commit is None or commit == ZERO:
        return False
    listed = list_tree(git_dir, commit, quarantine=True)
    if listed is None:
        return True
    names = {entry.path for entry in listed}
    return bool(names & RECORDS) and names <= set(TOP_FOLDERS)


def install_hooks(repo: Path, prefix: str = "") -> list[Path]:
    """Write `hooks/pre-receive`, which refuses a push that writes a results branch
    (`runyard hook check-push`), and `hooks/post-receive`, which hands the push to
    `runyard on-push` in the background, so the push returns at once; its output goes to
    runyard/on-push.log, rotated to on-push.log.1 (one old file kept) past LOG_LIMIT."""
    check_bare(repo)
    hooks = repo / "hooks"
    guard, hook = hooks / "pre-receive", hooks / "post-receive"
    for path, command in ((guard, _command("hook", "check-push")),
                          (hook, _command("on-push", prefix=prefix))):
        if path.exists() and MARKER not in path.read_text(errors="replace"):
            raise RunyardError(f"{path} exists and is not runyard's: merge it by hand, running\n"
                               f"  {command} < the hook's input")
    hooks.mkdir(exist_ok=True)
    guard.write_text(f"""#!/bin/sh
{MARKER}: refuse a push that would write the runner's records.
exec {_command("hook", "check-push")} -C "$(pwd)"
""")
    guard.chmod(0o755)
    hook.write_text(f"""#!/bin/sh
{MARKER}: hand the push to the runner, in the background.
log="$(pwd)/runyard/on-push.log"
mkdir -p "$(pwd)/runyard"
if [ -f "$log" ] && [ "$(wc -c <"$log")" -gt {LOG_LIMIT} ]; then
  mv -f "$log" "$log.1" 2>/dev/null
fi
input=$(cat)
printf '%s\\n' "$input" | nohup {_command("on-push", prefix=prefix)} -C "$(pwd)" >>"$log" 2>&1 &
echo "runyard: processing the push in the background (log: $log)"
""")
    hook.chmod(0o755)
    return [guard, hook]


def check_bare(repo: Path) -> None:
    if not (repo / "objects").is_dir() or not (repo / "HEAD").is_file():
        raise RunyardError(f"{repo} is not a bare git repository (no objects/ and HEAD)")


def _command(*words: str, prefix: str = "") -> str:
    args = [sys.executable, "-m", "runner", *words]
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
