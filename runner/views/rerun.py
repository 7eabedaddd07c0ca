"""The comparison of a run and its rerun, as `runyard rerun` prints it."""

from __future__ import annotations

from typing import Any

from runner.record.compare import Comparison


def comparison_lines(comparison: Comparison) -> list[str]:
    """How the rerun was made, then reproduced or the table of what differs."""
    old, new = comparison.old.metadata.uid, comparison.new.metadata.uid
    lines = list(comparison.notes)
    if comparison.reproduced:
        return [*lines, f"reproduced: run {new} has the results and artifact hashes of run {old}"]
    rows = [("result", "old", "new")] + [(d.what, _shown(d.old), _shown(d.new))
                                        for d in comparison.differences]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    table = [f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip() for row in rows]
    return [*lines, f"not reproduced: run {new} differs from run {old} in "
                    f"{len(comparison.differences)}:", *table]


def _shown(value: object) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def comparison_dict(comparison: Comparison) -> dict[str, Any]:
    """The comparison as `--json` prints it, the new run's record in full."""
    return {"rerun_of": comparison.old.metadata.uid, "reproduced": comparison.reproduced,
            "differences": [{"what": d.what, "old": d.old, "new": d.new}
                            for d in comparison.differences],
            "notes": list(comparison.notes), "record": comparison.new.to_dict()}
