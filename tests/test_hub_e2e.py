"""Every function of the hub runyard ships, added to a fresh project with `runyard hub add`
and run with `runyard run` on the Docker backend: their results and artifacts checked
against what the test data holds. Real Docker, real git, real pip installs.

One project serves the module (named for this session, so its images are its own): the
stdlib functions share the base image, train-classifier builds scikit-learn once, and
describe-csv builds Pillow once.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import secrets
import statistics
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.project.scaffold import init_project
from tests.helpers import commit_all, make_repo, read_record

pytestmark = pytest.mark.docker

NAME = f"ryhub-{secrets.token_hex(3)}"
BRANCH = "runyard/results"
HUB_FUNCTIONS = ["column-stats", "compare-models", "describe-csv", "quality-check", "split-dataset",
                 "train-classifier"]
Record = dict[str, Any]

PIPELINE = """\
apiVersion: runyard/v1
kind: pipeline
name: model-selection
steps:
  - name: check
    function: quality-check
    params: {max_missing_ratio: 0.2, min_rows: 100, unique_columns: [id]}
    inputs: {dataset: data/customers.csv}
  - name: split
    function: split-dataset
    after: [check]
    params: {test_size: 0.25, stratify: churned}
    inputs: {dataset: data/customers.csv}
    outputs: [train_set, test_set]
  - name: forest
    function: train-classifier
    params: {label: churned, drop: [id], model: random-forest, n_estimators: 60}
    inputs: {train_set: step://split/train_set, test_set: step://split/test_set}
    outputs: [model, metrics]
  - name: logistic
    function: train-classifier
    params: {label: churned, drop: [id], model: logistic-regression}
    inputs: {train_set: step://split/train_set, test_set: step://split/test_set}
    outputs: [model, metrics]
  - name: evaluate
    function: train-classifier
    handler: evaluate
    inputs: {model: step://forest/model, test_set: step://split/test_set}
  - name: compare
    function: compare-models
    params: {metric: accuracy}
    inputs: {forest: step://forest/metrics, logistic: step://logistic/metrics}
"""
JOB = """\
apiVersion: runyard/v1
kind: job
name: select
run: {pipeline: model-selection}
"""


# --- the data --------------------------------------------------------------------------------


def customers(rows: int = 240) -> list[dict[str, str]]:
    """Accounts whose churn follows tenure, plan and income linearly (with 8% of labels
    flipped); some ages and plans missing."""
    rng = random.Random(7)
    out = []
    for number in range(rows):
        tenure = rng.randint(1, 60)
        plan = rng.choice(["basic", "plus", "pro"])
        income = rng.randint(15, 120) * 1000
        churned = 2.0 - tenure / 12 + (1.0 if plan == "basic" else 0.0) - income / 60000 > 0
        if rng.random() < 0.08:
            churned = not churned
        out.append({
            "id": str(number + 1),
            "age": "" if number % 17 == 0 else str(rng.randint(18, 80)),
            "income": str(income),
            "plan": "NA" if number % 23 == 0 else plan,
            "tenure": str(tenure),
            "churned": "yes" if churned else "no",
        })
    return out


def csv_text(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


DATA = customers()
AGES = [float(row["age"]) for row in DATA if row["age"]]
MISSING_AGES = sum(1 for row in DATA if not row["age"])
MISSING_PLANS = sum(1 for row in DATA if row["plan"] == "NA")


# --- helpers ---------------------------------------------------------------------------------


def runyard(*args: str | Path, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def run_json(repo: Path, *args: str, expect: int = 0) -> Record:
    done = runyard("run", *args, "--json", cwd=repo)
    assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    record: Record = json.loads(done.stdout)
    return record



def artifact_bytes(repo: Path, uid: str, key: str, tmp: Path) -> bytes:
    out = tmp / f"{uid}-{key}"
    done = runyard("runs", "artifact", uid, key, "-o", out, cwd=repo)
    assert done.returncode == 0, done.stderr
    return out.read_bytes()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --- the project -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh project with every hub function added (by the command line), the data, and a
    pipeline that uses four of them; committed."""
    root = tmp_path_factory.mktemp("hub") / "project"
    init_project(root, NAME)
    for name in HUB_FUNCTIONS:
        done = runyard("hub", "add", name, cwd=root)
        assert done.returncode == 0, done.stderr
    (root / "data").mkdir()
    (root / "data/customers.csv").write_text(csv_text(DATA))
    (root / "pipelines").mkdir()
    (root / "pipelines/model-selection.yaml").write_text(PIPELINE)
    (root / "jobs/select.yaml").write_text(JOB)
    make_repo(root)
    commit_all(root, "hub functions and data")
    assert runyard("validate", cwd=root).returncode == 0
    yield root
    listed = runyard("runs", "list", "--all", "--limit", "1000", "--json", cwd=root)
    records = json.loads(listed.stdout) if listed.returncode == 0 else []
    for tag in {record["spec"].get("image") for record in records} - {None}:
        subprocess.run(["docker", "image", "rm", tag], capture_output=True, check=False)


# --- each function ---------------------------------------------------------------------------


def test_describe_csv_reports_statistics_and_draws_histograms(repo: Path, tmp_path: Path) -> None:
    run = run_json(repo, "describe-csv", "-i", "dataset=data/customers.csv", "-p", "bins=8")
    status = run["status"]
    assert status["state"] == "completed", status.get("error")
    cells = len(DATA) * 6
    assert status["results"] == {
        "rows": len(DATA), "columns": 6, "numeric_columns": 4,
        "missing_cells": MISSING_AGES + MISSING_PLANS,
        "missing_ratio": round((MISSING_AGES + MISSING_PLANS) / cells, 6)}
    keys = {artifact["key"] for artifact in status["artifacts"]}
    assert keys == {"summary", "hist-id", "hist-age", "hist-income", "hist-tenure"}
    uid = run["metadata"]["uid"]
    summary = json.loads(artifact_bytes(repo, uid, "summary", tmp_path))
    age = summary["age"]
    assert (age["type"], age["count"], age["missing"]) == ("numeric", len(AGES), MISSING_AGES)
    assert age["mean"] == pytest.approx(statistics.fmean(AGES))
    assert age["std"] == pytest.approx(statistics.stdev(AGES))
    assert (age["min"], age["max"]) == (min(AGES), max(AGES))
    plan = summary["plan"]
    assert (plan["type"], plan["missing"], plan["unique"]) == ("categorical", MISSING_PLANS, 3)
    assert summary["churned"]["unique"] == 2
    png = artifact_bytes(repo, uid, "hist-age", tmp_path)
    assert png_size(png) == (640, 400)
    assert len(png) > 2000  # bars, axes and text, not an empty image


def test_column_stats_runs_shell_and_awk(repo: Path, tmp_path: Path) -> None:
    run = run_json(repo, "column-stats", "-i", "dataset=data/customers.csv", "-p", "column=age")
    status = run["status"]
    assert status["state"] == "completed", status.get("error")
    results = status["results"]
    assert (results["column"], results["count"], results["missing"]) == ("age", len(AGES), MISSING_AGES)
    assert results["mean"] == pytest.approx(statistics.fmean(AGES))
    assert results["std"] == pytest.approx(statistics.stdev(AGES))
    assert (results["min"], results["max"]) == (min(AGES), max(AGES))
    table = artifact_bytes(repo, run["metadata"]["uid"], "column-stats", tmp_path).decode()
    assert table.splitlines()[2].startswith(f"| age | {len(AGES)} | {MISSING_AGES} |")
    # a column that is not numeric fails the run, saying where
    failed = run_json(repo, "column-stats", "-i", "dataset=data/customers.csv", "-p", "column=plan",
                      expect=1)
    assert failed["status"]["state"] == "failed"
    log = runyard("runs", "logs", failed["metadata"]["uid"], cwd=repo).stdout
    assert re.search(r'line 3: "(basic|plus|pro)" is not a number', log), log  # line 2's plan is NA


def test_quality_check_passes_and_fails_on_its_thresholds(repo: Path, tmp_path: Path) -> None:
    passed = run_json(repo, "quality-check", "-i", "dataset=data/customers.csv",
                      "-p", "max_missing_ratio=0.1", "-p", "unique_columns=id")
    status = passed["status"]
    assert status["state"] == "completed", status.get("error")
    assert status["results"]["failed_checks"] == 0
    assert status["results"]["worst_missing_column"] == "age"
    assert status["results"]["worst_missing_ratio"] == round(MISSING_AGES / len(DATA), 6)
    failed = run_json(repo, "quality-check", "-i", "dataset=data/customers.csv",
                      "-p", "max_missing_ratio=0.01", "-p", "unique_columns=plan", expect=1)
    status = failed["status"]
    assert status["state"] == "failed"
    assert "missing_ratio of column 'age' is" in status["error"]
    assert "unique_values of column 'plan'" in status["error"]
    assert status["results"]["failed_checks"] == 3  # what it found is kept all the same
    report = json.loads(artifact_bytes(repo, failed["metadata"]["uid"], "quality-report", tmp_path))
    failing = {(item["check"], item["column"]) for item in report["checks"] if not item["passed"]}
    assert failing == {("missing_ratio", "age"), ("missing_ratio", "plan"), ("unique_values", "plan")}


def test_a_pipeline_of_hub_functions_checks_splits_trains_evaluates_and_compares(
        repo: Path, tmp_path: Path) -> None:
    run = run_json(repo, "select")
    assert run["status"]["state"] == "completed", run["status"].get("error")
    steps = {step["name"]: read_record(repo, step["uid"]) for step in run["status"]["steps"]}
    assert all(step["status"]["state"] == "completed" for step in steps.values())
    split = steps["split"]["status"]["results"]
    assert split["train_rows"] + split["test_rows"] == len(DATA)
    assert split["test_rows"] == pytest.approx(len(DATA) * 0.25, abs=2)
    forest = steps["forest"]["status"]["results"]
    logistic = steps["logistic"]["status"]["results"]
    assert forest["train_rows"] == split["train_rows"]
    assert forest["test_rows"] == split["test_rows"]
    assert forest["features"] == 4  # age, income, plan, tenure: id and the label left out
    test_labels = [row["churned"] for row in csv.DictReader(io.StringIO(artifact_bytes(
        repo, steps["split"]["metadata"]["uid"], "test_set", tmp_path).decode()))]
    majority = max(test_labels.count("yes"), test_labels.count("no")) / len(test_labels)
    for metrics in (forest, logistic):  # the data has a signal to learn: both beat the majority
        assert metrics["accuracy"] >= majority + 0.08, (metrics, majority)
        assert 0.75 < metrics["roc_auc"] <= 1
    # the model artifact, pickled by one run, read back by another
    evaluated = steps["evaluate"]["status"]["results"]
    assert {key: evaluated[key] for key in ("accuracy", "f1_macro", "roc_auc")} == {
        key: forest[key] for key in ("accuracy", "f1_macro", "roc_auc")}
    metrics = json.loads(artifact_bytes(repo, steps["forest"]["metadata"]["uid"], "metrics", tmp_path))
    assert metrics["classes"] == ["no", "yes"]
    assert sum(map(sum, metrics["confusion_matrix"])) == split["test_rows"]
    compare = steps["compare"]["status"]["results"]
    best = "forest" if forest["accuracy"] >= logistic["accuracy"] else "logistic"
    assert (compare["best"], compare["compared"]) == (best, 2)
    assert compare["best_value"] == max(forest["accuracy"], logistic["accuracy"])
    table = artifact_bytes(repo, steps["compare"]["metadata"]["uid"], "comparison", tmp_path).decode()
    assert table.splitlines()[1].startswith(f"1,{best},")
