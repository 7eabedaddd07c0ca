"""Benchmark reading a results branch of 1,000, 10,000 and 100,000 records.

    python bench/read_records.py [--sizes 1000,10000,100000] [--repeat 3] [--keep DIR]

Fills one bare repository per size with a realistic mix, as runs would have written it
(each record's row of the index included): hyper-parameter parents with 20 trials each,
pipeline runs with 4 steps, plain function runs of 8 jobs, and a push record for every 30
runs. Then times, in interleaved rounds so a busy machine weighs on every size alike:

    runyard runs list
    runyard runs list --job tune --state completed
    runyard runs show <uid prefix>        (another run each round)
    runyard report -o DIR                 (when this runyard has the command)

and prints each median, its growth against the smallest branch, and the goals: at 10,000
records every listing and `runs show` under 0.5 s, at 100,000 under 1 s, the report of
10,000 under 10 s; growth flat for `runs show`, no worse than linear for the report.

A benchmark, not a test: it prints figures and exits 0 whatever they are.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from common import (
    Sample,
    add_keep,
    add_repeat,
    interleave,
    median,
    new_parser,
    run,
    runyard,
    timed,
    work_folder,
)

from runner.record.index import IndexRow, row_of, with_rows
from runner.record.model import (
    Artifact,
    Metadata,
    Params,
    PushRecord,
    PushRun,
    RunInput,
    RunRecord,
    Spec,
    Status,
    StepSummary,
    TrialSummary,
    Trigger,
)
from runner.record.results import ResultsBranch, new_uid, push_path, run_folder

BRANCH = "runyard/results"
BATCH = 5000  # records a fill commit
TRIALS, STEPS = 20, 4
JOBS = ["train", "evaluate", "prep", "score", "report", "export", "clean", "ingest"]
GOALS = {10_000: 0.5, 100_000: 1.0}  # seconds, for every listing and `runs show`
REPORT_GOAL = 10.0  # seconds for the report of 10,000 records


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sorted(int(size) for size in args.sizes.split(","))
    with work_folder("runyard-bench-read-", args.keep) as root:
        branches = {size: fill(root / f"records-{size}.git", size) for size in sizes}
        has_report = subprocess.run(runyard("report", "--help"), capture_output=True).returncode == 0
        jobs: dict[str, Callable[[], Sample]] = {}
        for size, (git_dir, uids) in branches.items():
            shown = _cycle(uids)
            jobs[f"{size} list"] = lambda g=git_dir: timed(_runs(g, "list"))
            jobs[f"{size} list --job"] = lambda g=git_dir: timed(
                _runs(g, "list", "--job", "tune", "--state", "completed"))
            jobs[f"{size} show"] = lambda g=git_dir, s=shown: timed(_runs(g, "show", next(s)[:6]))
            if has_report:
                jobs[f"{size} report"] = lambda g=git_dir, r=root, n=size: timed(
                    runyard("report", "-C", str(g), "--branch", BRANCH, "-o", str(r / f"site-{n}")))
        print(f"timing, {args.repeat} interleaved rounds after a warm-up"
              + ("" if has_report else " (this runyard has no `report` command)"), flush=True)
        samples = interleave(jobs, args.repeat, progress=True)
        walls = {label: median(s.wall for s in runs) for label, runs in samples.items()}
        print("\nCPU time (user + system) of each command, median: what a busy machine "
              "does not inflate")
        table({label: median(s.cpu for s in runs) for label, runs in samples.items()}, sizes)
        print("\nwall time, median")
        report(walls, sizes)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = new_parser(__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000", help="records on each branch")
    add_repeat(parser, default=3)
    add_keep(parser, "the repositories")
    return parser.parse_args(argv)


def _runs(git_dir: Path, *args: str) -> list[str]:
    return runyard("runs", *args, "-C", str(git_dir), "--branch", BRANCH)


def _cycle(uids: list[str]) -> Iterator[str]:
    picks = random.Random(7).sample(uids, min(len(uids), 50))
    while True:
        yield from picks


# filling ---------------------------------------------------------------------------------


def fill(git_dir: Path, size: int) -> tuple[Path, list[str]]:
    """A bare repository whose results branch holds `size` records; their uids."""
    if not git_dir.exists():
        run(["git", "init", "-q", "--bare", str(git_dir)])
    results = ResultsBranch(git_dir, BRANCH)
    if results.store.head() is not None:
        uids = results.uids()
        print(f"{size:>7} records: kept from an earlier run ({len(uids)})")
        return git_dir, uids
    start = time.perf_counter()
    made = Mix(random.Random(size))
    uids: list[str] = []
    while len(uids) < size:
        files, rows = made.batch(min(BATCH, size - len(uids)))
        results.store.commit(files, f"bench: {len(rows)} records",
                             derived=lambda base, rows=rows: with_rows(base, rows))
        uids += [row.uid for row in rows]
    results.close()
    print(f"{size:>7} records: made in {time.perf_counter() - start:.1f} s", flush=True)
    return git_dir, uids


class Mix:
    """Records as a project's runs make them, in the proportions a busy project has."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.count = 0
        self.since_push: list[RunRecord] = []

    def batch(self, want: int) -> tuple[dict[str, bytes | None], list[IndexRow]]:
        files: dict[str, bytes | None] = {}
        rows: list[IndexRow] = []
        while len(rows) < want:
            for record in self._group()[: want - len(rows)]:
                files[f"{run_folder(record.metadata.uid)}/run.yaml"] = record.to_yaml()
                files[f"{run_folder(record.metadata.uid)}/log.txt"] = b"epoch 1 loss=0.3\n" * 40
                rows.append(row_of(record))
                self.since_push.append(record)
            if len(self.since_push) >= 30:
                push = self._push()
                files[push_path(push.revision, push.ref)] = push.to_yaml()
        return files, rows

    def _group(self) -> list[RunRecord]:
        self.count += 1
        kind = self.count % 4
        if kind == 0:
            return self._hyper()
        if kind == 1:
            return self._pipeline()
        return [self._run(self.rng.choice(JOBS)) for _ in range(2)]

    def _run(self, job: str, *, parent: str | None = None, iteration: int = 0,
             params: dict[str, object] | None = None, name: str | None = None) -> RunRecord:
        uid = new_uid()
        accuracy = round(self.rng.uniform(0.6, 0.99), 4)
        revision = f"{self.count // 10:040x}"
        return RunRecord(
            Metadata(uid=uid, name=name or job, project="churn", job=job, iteration=iteration,
                     parent=parent),
            Spec(function="trainer", handler="train",
                 params=Params(project={"seed": 42}, job=params or {},
                               resolved={"seed": 42, **(params or {})}),
                 inputs={"data": RunInput(uri="data/raw.csv", hash="sha256:" + "ab" * 32, size=1024)},
                 image="runyard/churn:1ffa9d0cd619", image_id="sha256:" + "0d" * 32,
                 env_hash="1f" * 8, revision=revision,
                 trigger=Trigger("push", "refs/heads/main", f"{revision[:12]}")),
            Status(state="completed" if self.rng.random() > 0.1 else "failed",
                   start=f"2026-11-{1 + self.count % 28:02d}T10:{self.count % 60:02d}:00+00:00",
                   duration=round(self.rng.uniform(1, 90), 3), exit_code=0,
                   results={"accuracy": accuracy, "loss": round(1 - accuracy, 4)},
                   artifacts=(Artifact(key="model", kind="model", format="pkl",
                                       hash="sha256:" + "cd" * 32, size=48213),),
                   logs="log.txt", runner="bench/1:1", host="bench"))

    def _hyper(self) -> list[RunRecord]:
        parent = self._run("tune")
        trials = [self._run("tune", parent=parent.metadata.uid, iteration=n,
                            params={"depth": n % 5 + 2, "lr": 0.01 * (n % 4 + 1)})
                  for n in range(1, TRIALS + 1)]
        best = max(trials, key=lambda t: t.status.results["accuracy"])
        summaries = tuple(TrialSummary(t.metadata.iteration, t.metadata.uid, t.status.state,
                                       t.spec.params.job, t.status.results) for t in trials)
        status = replace(parent.status, trials=summaries, results=best.status.results,
                         best_iteration=best.metadata.iteration)
        return [replace(parent, status=status), *trials]

    def _pipeline(self) -> list[RunRecord]:
        parent = self._run("training")
        steps = [self._run("training", parent=parent.metadata.uid, name=name)
                 for name in ("prep", "train", "evaluate", "publish")[:STEPS]]
        summaries = tuple(StepSummary(s.metadata.name, s.metadata.uid, s.status.state)
                          for s in steps)
        return [replace(parent, status=replace(parent.status, steps=summaries)), *steps]

    def _push(self) -> PushRecord:
        records, self.since_push = self.since_push, []
        revision = records[-1].spec.revision
        return PushRecord(revision=revision, old=None, ref="refs/heads/main",
                          received=records[0].status.start, status="completed",
                          runs=tuple(PushRun(r.metadata.job or "", r.metadata.uid, r.status.state)
                                     for r in records if not r.metadata.parent))


# report ----------------------------------------------------------------------------------


def table(seconds: dict[str, float], sizes: list[int]) -> list[str]:
    """Prints each command's seconds at each size and its growth; the commands."""
    commands = list(dict.fromkeys(label.split(" ", 1)[1] for label in seconds))
    print(f"{'':<16}" + "".join(f"{size:>12,}" for size in sizes) + "   growth")
    for command in commands:
        times = [seconds[f"{size} {command}"] for size in sizes]
        growth = ", ".join(f"{times[i] / times[0]:.2f}x at {size:,}"
                           for i, size in enumerate(sizes) if i)
        print(f"{command:<16}" + "".join(f"{t:>11.3f}s" for t in times) + f"   {growth}")
    return commands


def report(walls: dict[str, float], sizes: list[int]) -> None:
    smallest = sizes[0]
    commands = table(walls, sizes)
    print()
    for size, goal in GOALS.items():
        if size in sizes:
            worst = max(walls[f"{size} {c}"] for c in commands if c != "report")
            print(f"listings and show at {size:,}: slowest {worst:.3f} s "
                  f"(goal < {goal} s: {'met' if worst < goal else 'NOT met'})")
    if "report" in commands and 10_000 in sizes:
        took = walls["10000 report"]
        print(f"report of 10,000: {took:.2f} s (goal < {REPORT_GOAL} s: "
              f"{'met' if took < REPORT_GOAL else 'NOT met'})")
    if len(sizes) > 1 and "show" in commands:
        print(f"runs show grows {walls[f'{sizes[-1]} show'] / walls[f'{smallest} show']:.2f}x "
              f"from {smallest:,} to {sizes[-1]:,} records (goal: flat)")


if __name__ == "__main__":
    sys.exit(main())
