"""`runyard runs show UID`: exactly what ran, as the record says it.

Revision and tree, function and handler (or pipeline, or command), image tag and id,
environment hash, the function's files, every input with its URI and content hash,
params by level and resolved, trigger, host, times, results, artifacts; for a parent
the table of its trials or steps, each with its uid. What an older record lacks is
shown as unknown rather than left out, so a reader sees what the record does not say.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.record.model import RunRecord
from runner.record.results import run_folder
from runner.views.runs import duration_text, value_text
from runner.views.tables import placed_text, step_lines, trial_lines

UNKNOWN = "(not recorded)"
LEVELS = ("project", "pipeline", "job", "override", "trial", "step")


def provenance_lines(record: RunRecord, branch: str) -> list[str]:
    meta, spec, status = record.metadata, record.spec, record.status
    lines = [f"run {meta.uid} ({meta.name}): {status.state}"
             + (f" ({status.reason})" if status.reason else "")]
    if status.error:
        lines.append(f"  error: {status.error}")
    fields: list[tuple[str, str]] = [
        ("job", meta.job or "-"),
        *([("parent", f"{meta.parent} (iteration {meta.iteration})")] if meta.parent else []),
        *([("rerun of", meta.rerun_of)] if meta.rerun_of else []),
        ("attempt", str(meta.attempt)),
        ("revision", (spec.revision or UNKNOWN) + (" (working tree, uncommitted changes)"
                                                   if spec.dirty else "")),
        ("tree", spec.tree or UNKNOWN),
        *_what_ran(record),
        ("trigger", _trigger(record)),
        ("backend", spec.backend),
        ("host", f"{status.host or UNKNOWN}" + (f" (runner {status.runner})" if status.runner else "")),
        *([("swarm", placed)] if (placed := placed_text(record)) else []),
        ("started", status.start or "-"),
        ("ended", status.end or "-"),
        ("duration", duration_text(status.duration) or "-"),
        *([("skipped for", status.skipped_for)] if status.skipped_for else []),
        *([("exit code", str(status.exit_code))] if status.exit_code is not None else []),
    ]
    lines += _aligned(fields)
    lines += _section("inputs", {name: f"{item.uri}  {item.hash or '(no hash)'}"
                                 + (f"  {item.size} bytes" if item.size is not None else "")
                                 for name, item in spec.inputs.items()})
    lines += _section("params", {level: value_text(dict(getattr(spec.params, level)))
                                 for level in LEVELS if getattr(spec.params, level)}
                      | {"resolved": value_text(dict(spec.params.resolved))})
    lines += _section("results", {key: value_text(value) for key, value in status.results.items()})
    lines += _section("artifacts", {a.key: f"{a.kind or '-'}  {a.size if a.size is not None else '?'}"
                                    f" bytes  {a.hash or '(no hash)'}" for a in status.artifacts})
    children = [*trial_lines(record), *step_lines(record)]
    if children:
        lines += [f"{'trials' if status.trials else 'steps'}:", *children]
    lines.append(f"record: git show {branch}:{run_folder(meta.uid)}/run.yaml")
    return lines


def _what_ran(record: RunRecord) -> list[tuple[str, str]]:
    spec = record.spec
    found = []
    if spec.pipeline:
        found.append(("pipeline", spec.pipeline))
    if spec.function:
        found.append(("function", spec.function + (f", handler {spec.handler}" if spec.handler
                                                   else "")))
    if spec.command:
        found.append(("command", " ".join(spec.command)))
    if spec.function:
        found += [("image", f"{spec.image or UNKNOWN} ({spec.image_id or 'no image id'})"),
                  ("env hash", spec.env_hash or UNKNOWN),
                  ("code", ", ".join(f"{path} {(oid or 'absent')[:12]}"
                                     for path, oid in spec.code.items()) or UNKNOWN)]
    if spec.hyper:
        found.append(("hyper", value_text(dict(spec.hyper))))
    return found


def _trigger(record: RunRecord) -> str:
    trigger = record.spec.trigger
    parts = [trigger.kind, trigger.ref or "", trigger.detail or "",
             f"by {trigger.by}" if trigger.by else ""]
    return " ".join(part for part in parts if part)


def _aligned(fields: list[tuple[str, str]], indent: str = "  ") -> list[str]:
    width = max((len(name) for name, _ in fields), default=0)
    return [f"{indent}{name.ljust(width)}  {value}" for name, value in fields]


def _section(title: str, values: Mapping[str, Any]) -> list[str]:
    if not values:
        return [f"{title}: none"]
    return [f"{title}:", *_aligned([(str(k), str(v)) for k, v in values.items()], "  ")]
