"""Benchmark writing run records to the results branch, empty and with 10,000 records.

    python bench/records.py [--records 1000] [--existing 10000] [--fill batch|api] [--keep DIR]

In two temporary bare repositories, times `ResultsBranch.write` of realistic
records (a run record as `runyard run` writes it, with a fresh uid, spec,
status and one artifact, plus a few-KB log): 1,000 onto an empty branch, and
1,000 onto a branch first filled with 10,000 records (by default with a few
large commits through `GitStore.commit`, or with `--fill api` one
`ResultsBranch.write` each). The two series are interleaved, one write to
each in turn (which goes first alternates), so a busy machine weighs on both alike. Prints the per-record
milliseconds of both and their ratio; the goal is the second within 1.5x of
the first, as the store rewrites only the trees along a record's path.

A benchmark, not a test: it prints figures and exits 0 whatever they are.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from common import new_parser, run, verdict, work_folder

from runner.record.index import row_of, with_rows
from runner.record.model import RunRecord
from runner.record.results import ResultsBranch, new_uid, run_folder

GOAL_RATIO = 1.5
BRANCH = "runyard/results"
BATCH = 1000
LOG_LINES = 60


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with work_folder("runyard-bench-records-", args.keep) as root:
        empty, full = (ResultsBranch(bare_repo(root / name), BRANCH) for name in ("empty", "full"))
        print(f"repositories: {root}/empty and {root}/full (branch {BRANCH})")
        print(f"record: {len(make_record(0).to_yaml())} bytes of run.yaml, "
              f"{len(make_log(0))} bytes of log.txt\n")
        start = time.perf_counter()
        fill(full, args.existing, args.fill)
        print(f"filled 'full' with {args.existing} records ({args.fill}) in "
              f"{time.perf_counter() - start:.1f} s; it holds {count_records(full)} records")
        print(f"timing {args.records} writes to each, interleaved (one to 'empty', one to "
              f"'full'), so both see the same machine load\n")
        timings = interleave(empty, full, args.existing, args.records)
        report(*timings, args.existing)
    return 0


def bare_repo(path: Path) -> Path:
    run(["git", "init", "-q", "--bare", str(path)])
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__)
    parser.add_argument("--records", type=int, default=1000, help="records timed each time")
    parser.add_argument("--existing", type=int, default=10000,
                        help="records on the branch before the second timing")
    parser.add_argument("--fill", choices=["batch", "api"], default="batch",
                        help="fill with large GitStore commits (batch) or one write each (api)")
    parser.add_argument("--keep", metavar="DIR", help="make the bare repositories in DIR and keep them")
    args = parser.parse_args(argv)
    return args


def make_record(index: int) -> RunRecord:
    """A run record shaped like the ones `runyard run` commits."""
    uid = new_uid()
    accuracy = round(0.8 + (index % 97) / 1000, 4)
    return RunRecord.from_dict({
        "apiVersion": "runyard/v1",
        "kind": "run",
        "metadata": {"uid": uid, "name": "trainer", "project": "churn", "job": "tune",
                     "iteration": index % 12, "parent": None, "labels": {"team": "ml"},
                     "attempt": 1},
        "spec": {
            "function": "trainer", "handler": "train", "command": None,
            "params": {"project": {"seed": 42}, "pipeline": {}, "job": {"epochs": 10},
                       "override": {}, "step": {},
                       "resolved": {"seed": 42, "epochs": 10, "lr": 0.1, "depth": index % 8}},
            "inputs": {"dataset": {"uri": "data/raw.csv", "hash": "sha256:" + "ab" * 32,
                                   "size": 1024}},
            "hyper": None,
            "image": "runyard/churn:1ffa9d0cd619",
            "image_id": "sha256:" + "0d" * 32,
            "env_hash": "1f" * 32,
            "revision": "df" * 20,
            "dirty": False,
            "trigger": {"kind": "push", "ref": "refs/heads/main",
                        "detail": f"{'aa' * 6}..{'df' * 6}"},
            "backend": "docker",
            "resources": {"cpu": 2, "memory": "2Gi", "timeout": "1h"},
        },
        "status": {
            "state": "completed", "reason": None,
            "start": "2026-11-21T13:02:22.849+00:00", "end": "2026-11-21T13:02:31.734+00:00",
            "duration": 8.885, "exit_code": 0,
            "results": {"accuracy": accuracy, "loss": round(1 - accuracy, 4)},
            "artifacts": [{"key": "model", "kind": "model", "format": "pkl",
                           "hash": "sha256:" + "cd" * 32, "size": 48213,
                           "uri": "store://sha256:" + "cd" * 32}],
            "error": None, "best_iteration": None, "trials": [], "logs": "log.txt",
            "log_truncated": False, "skipped_for": None, "runner": "bench/1:1",
            "host": "bench", "containers": [f"runyard-{uid}"],
        },
    }, f"run {uid}")


def make_log(index: int) -> bytes:
    lines = (f"2026-11-21T13:02:{i % 60:02d} epoch {i} step {index}: "
             f"loss={1 / (i + 1):.6f} accuracy={0.8 + i / 1000:.4f} lr=0.1 depth=5"
             for i in range(LOG_LINES))
    return ("\n".join(lines) + "\n").encode()


def time_write(results: ResultsBranch, index: int) -> float:
    """Seconds one `ResultsBranch.write` of a fresh record takes."""
    record, log = make_record(index), make_log(index)
    start = time.perf_counter()
    results.write(record, log)
    return time.perf_counter() - start


def interleave(empty: ResultsBranch, full: ResultsBranch, existing: int,
               count: int) -> tuple[list[float], list[float]]:
    on_empty: list[float] = []
    on_full: list[float] = []
    for index in range(count):
        pair = [(on_empty, empty, index), (on_full, full, existing + index)]
        for seconds, results, number in pair if index % 2 else reversed(pair):
            seconds.append(time_write(results, number))
    return on_empty, on_full


def fill(results: ResultsBranch, want: int, how: str) -> None:
    """Put `want` records on the branch: one write each, or a few large commits."""
    if how == "api":
        for index in range(want):
            time_write(results, index)
        return
    for first in range(0, want, BATCH):
        files: dict[str, bytes | None] = {}
        rows = []
        for number in range(first, min(first + BATCH, want)):
            record = make_record(number)
            folder = run_folder(record.metadata.uid)
            files[f"{folder}/run.yaml"] = record.to_yaml()
            files[f"{folder}/log.txt"] = make_log(number)
            rows.append(row_of(record))
        results.store.commit(files, f"bench: fill {len(files) // 2} records from {first}",
                             derived=lambda base, rows=rows: with_rows(base, rows))


def count_records(results: ResultsBranch) -> int:
    done = run(["git", "--git-dir", str(results.store.git_dir), "ls-tree", "-r", "--name-only",
                f"refs/heads/{BRANCH}", "runs"])
    return sum(1 for path in done.stdout.split() if path.endswith("/run.yaml"))


def report(empty: list[float], full: list[float], existing: int) -> None:
    rows = [(f"{len(empty)} records on an empty branch", empty),
            (f"{len(full)} records on top of {existing}", full)]
    for label, seconds in rows:
        print(f"{label:<38} median {statistics.median(seconds) * 1000:6.2f} ms, "
              f"mean {statistics.mean(seconds) * 1000:6.2f} ms, "
              f"p95 {percentile(seconds, 0.95) * 1000:6.2f} ms per record "
              f"(total {sum(seconds):.1f} s)")
    median_ratio = statistics.median(full) / statistics.median(empty)
    mean_ratio = statistics.mean(full) / statistics.mean(empty)
    print(f"\nratio full/empty: median {median_ratio:.2f}x, mean {mean_ratio:.2f}x "
          f"(goal within {GOAL_RATIO}x: {verdict(median_ratio <= GOAL_RATIO)})")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


if __name__ == "__main__":
    sys.exit(main())
