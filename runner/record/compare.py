"""Two runs of the same thing compared: what a rerun reproduced and what it did not."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.record.model import RunRecord


@dataclass(frozen=True)
class Difference:
    """One result (or artifact hash, or state) that differs: its name, old and new value."""

    what: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Comparison:
    """A recorded run and its rerun; `notes` say how the rerun was made (image, inputs)."""

    old: RunRecord
    new: RunRecord
    differences: tuple[Difference, ...]
    notes: tuple[str, ...] = ()

    @property
    def should_reproduce(self) -> bool:
        return self.old.status.state == "completed"

    @property
    def reproduced(self) -> bool:
        return not self.differences


def compare(old: RunRecord, new: RunRecord, notes: tuple[str, ...] = ()) -> Comparison:
    """Compare state, results, artifact hashes and the trials' results of two runs."""
    differences = [Difference("state", old.status.state, new.status.state)] \
        if old.status.state != new.status.state else []
    differences += _differing("result", old.status.results, new.status.results)
    differences += _differing("artifact", _hashes(old), _hashes(new))
    new_trials = {t.iteration: t.results for t in new.status.trials}
    for trial in old.status.trials:
        differences += _differing(f"trial {trial.iteration} result", trial.results,
                                  new_trials.get(trial.iteration, {}))
    return Comparison(old, new, tuple(differences), notes)


def _hashes(record: RunRecord) -> dict[str, str | None]:
    return {artifact.key: artifact.hash for artifact in record.status.artifacts}


def _differing(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Difference]:
    return [Difference(f"{kind} {key}", old.get(key), new.get(key))
            for key in sorted({*old, *new}, key=str) if old.get(key) != new.get(key)]
