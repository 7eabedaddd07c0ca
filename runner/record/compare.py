"""Two runs of the same thing compared: what a rerun reproduced and what it did not."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runner.frozen import frozen
from runner.record.model import RunRecord

Counterpart = tuple[str, RunRecord, RunRecord | None]  # (label, old child, new child or None)


@frozen
class Difference:
    """One state, result or artifact hash that differs: what it is, old and new value."""

    what: str
    old: Any
    new: Any


@frozen
class Comparison:
    """A recorded run and its rerun; `notes` say how the rerun was made (image, inputs)."""

    old: RunRecord
    new: RunRecord
    differences: tuple[Difference, ...]
    notes: tuple[str, ...] = ()

    @property
    def should_reproduce(self) -> bool:
        return self.old.succeeded

    @property
    def reproduced(self) -> bool:
        return not self.differences


def compare(old: RunRecord, new: RunRecord, children: Sequence[Counterpart] = (),
            notes: Sequence[str] = ()) -> Comparison:
    """Compare two runs, and each of their children (trials, steps) with its counterpart."""
    differences = _differences("", old, new)
    for label, old_child, new_child in children:
        differences += _differences(f"{label} ", old_child, new_child) if new_child else \
            [Difference(f"{label} state", _outcome(old_child), None)]
    return Comparison(old, new, tuple(differences), tuple(notes))


def _differences(prefix: str, old: RunRecord, new: RunRecord) -> list[Difference]:
    """State (a memoized run counts as completed), results and artifact hashes."""
    found = [Difference(f"{prefix}state", _outcome(old), _outcome(new))] \
        if _outcome(old) != _outcome(new) else []
    found += _differing(f"{prefix}result", old.status.results, new.status.results)
    return found + _differing(f"{prefix}artifact", _hashes(old), _hashes(new))


def _outcome(record: RunRecord) -> str:
    return "completed" if record.succeeded else record.status.state


def _hashes(record: RunRecord) -> dict[str, str | None]:
    return {artifact.key: artifact.hash for artifact in record.status.artifacts}


def _differing(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Difference]:
    return [Difference(f"{kind} {key}", old.get(key), new.get(key))
            for key in sorted({*old, *new}, key=str) if old.get(key) != new.get(key)]
