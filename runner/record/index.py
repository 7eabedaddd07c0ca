"""The index of a results branch: one row per run, all that listing, filtering, sorting and
finding runs needs, so that none of it reads a record.

    index/runs/<first two characters of the uid>.json       top-level runs
    index/children/<first two characters of the uid>.json   trials and steps
    index/version                                           V, when the index holds every run

Each shard is `{"version": V, "rows": [[...], ...]}`, its rows sorted by uid. Top-level
runs and their children are kept apart because most of a branch is trials, and the usual
listing needs none of them. Each row is written in the same commit as its record
(`ResultsBranch.write`), so the two never disagree. The version file is written with the
first record of a branch, or by `runyard runs reindex` on a branch whose records are older
than the index (or than its version): without it, readers read the records themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from runner.record.gitstore import AtCommit
from runner.record.model import RunRecord

VERSION = 2
TOP, CHILDREN = "index/runs", "index/children"
VERSION_PATH = "index/version"
MAX_KEYS = 64  # params or results kept in a row; `runs show` has them all
MAX_TEXT = 200  # characters of a text value kept in a row


class IndexRow(NamedTuple):
    """One run, as `runs list` shows it. `params` are the run's own (those the project
    gives every run left out) and, for a parent, its best trial's."""

    uid: str
    name: str
    job: str | None
    parent: str | None
    iteration: int
    state: str
    revision: str
    start: str | None
    duration: float | None
    children: int  # trials or steps
    kind: str  # "trial", "step" or "" (no children)
    best: int | None
    params: Mapping[str, Any]
    results: Mapping[str, Any]


def row_of(record: RunRecord) -> IndexRow:
    meta, spec, status = record.metadata, record.spec, record.status
    best = next((t for t in status.trials if t.iteration == status.best_iteration), None)
    children, kind = ((len(status.trials), "trial") if status.trials
                      else (len(status.steps), "step") if status.steps else (0, ""))
    params = {**key_params(record), **(best.params if best else {})}
    return IndexRow(meta.uid, meta.name, meta.job, meta.parent, meta.iteration, status.state,
                    spec.revision, status.start, status.duration, children, kind,
                    status.best_iteration, _scalars(params), _scalars(status.results))


def key_params(record: RunRecord) -> dict[str, Any]:
    """The resolved params but those the project gives every run, as it gives them."""
    params = record.spec.params
    return {key: value for key, value in params.resolved.items()
            if key not in params.project or params.project[key] != value}


def _scalars(values: Mapping[str, Any]) -> dict[str, Any]:
    """What a row keeps of params or results: numbers, booleans and short texts."""
    kept: dict[str, Any] = {}
    for key, value in values.items():
        if len(kept) == MAX_KEYS:
            break
        if isinstance(value, str):
            kept[str(key)] = value[:MAX_TEXT]
        elif value is None or isinstance(value, bool | int | float):
            kept[str(key)] = value
    return kept


def shard_path(row: IndexRow) -> str:
    return f"{CHILDREN if row.parent else TOP}/{row.uid[:2]}.json"


def shards_of(prefix: str) -> list[str]:
    """The shards that hold the runs whose uids start with `prefix` (two characters or more)."""
    return [f"{folder}/{prefix[:2]}.json" for folder in (TOP, CHILDREN)]


def with_rows(base: AtCommit, rows: Iterable[IndexRow]) -> dict[str, bytes | None]:
    """The index files to write so that the commit `base` gains (or updates) `rows`. The
    first record of a branch makes the index complete; on a branch that has records but no
    index (or a shard this version cannot read), the rows are written all the same and a
    reindex completes the rest."""
    by_shard: dict[str, dict[str, IndexRow]] = {}
    for row in rows:
        path = shard_path(row)
        if path not in by_shard:
            by_shard[path] = {r.uid: r for r in _readable(base.read(path))}
        by_shard[path][row.uid] = row
    files: dict[str, bytes | None] = {path: encode(found.values())
                                      for path, found in by_shard.items()}
    if not base.exists(VERSION_PATH) and not base.exists("runs"):
        files[VERSION_PATH] = str(VERSION).encode()
    return files


def _readable(raw: bytes | None) -> list[IndexRow]:
    try:
        return decode(raw or b"")
    except IndexProblem:
        return []  # rewritten with what is known; a reindex restores the rest


def shards(rows: Iterable[IndexRow]) -> dict[str, bytes | None]:
    """The whole index of these rows (a reindex)."""
    by_shard: dict[str, list[IndexRow]] = {}
    for row in rows:
        by_shard.setdefault(shard_path(row), []).append(row)
    return {**{path: encode(found) for path, found in by_shard.items()},
            VERSION_PATH: str(VERSION).encode()}


def encode(rows: Iterable[IndexRow]) -> bytes:
    ordered = sorted(rows, key=lambda row: row.uid)
    return json.dumps({"version": VERSION, "rows": [list(row) for row in ordered]},
                      separators=(",", ":"), ensure_ascii=False).encode()


class IndexProblem(Exception):
    """A shard that is not what this version writes (hand-edited, truncated or older)."""


def decode(raw: bytes) -> list[IndexRow]:
    if not raw:
        return []
    try:
        data = json.loads(raw)
        if data.get("version") != VERSION:
            raise IndexProblem(f"version {data.get('version')!r}, not {VERSION}")
        rows = [IndexRow(*row) for row in data["rows"]]
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise IndexProblem(str(error)) from error
    if not all(isinstance(row.uid, str) and isinstance(row.params, dict)
               and isinstance(row.results, dict) for row in rows):
        raise IndexProblem("a row that is not a run's")
    return rows
