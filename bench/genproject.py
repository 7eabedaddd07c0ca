"""Generate a large runyard project that validates clean, for the benchmarks.

The project has N YAML files: project.yaml, then about 40% functions, 20%
pipelines and 40% jobs, all referencing each other (steps name functions and
handlers, `step://` inputs and `after` link the steps, jobs run pipelines or
functions with hyper-parameters and triggers). Each Python function has its code
under src/: a module, or every fifth one a package with a sub-module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HEADER = "apiVersion: runyard/v1\n"

MODULE_CODE = '''"""Handlers of {name}."""

import json

SCALE = 2


def prepare(raw=None, sample=100, **params):
    return {{"dataset": raw, "rows": sample * SCALE}}


def train(dataset=None, lr=0.1, depth=3, **params):
    return {{"model": json.dumps({{"lr": lr, "depth": depth}})}}


def evaluate(model=None, **params):
    return {{"accuracy": 0.9, "loss": 0.1}}
'''

PACKAGE_STEPS = '''"""Pipeline steps of {name}."""


def evaluate(model=None, **params):
    return {{"accuracy": 0.9}}
'''


@dataclass(frozen=True)
class Counts:
    """How many files of each kind a project of `files` YAML files has."""

    functions: int
    pipelines: int
    jobs: int

    @classmethod
    def of(cls, files: int) -> Counts:
        rest = max(files - 1, 3)
        functions = max(round(rest * 0.4), 1)
        pipelines = max(round(rest * 0.2), 1)
        return cls(functions, pipelines, max(rest - functions - pipelines, 1))

    @property
    def total(self) -> int:
        return 1 + self.functions + self.pipelines + self.jobs


def generate(root: Path, files: int) -> Counts:
    """Write a project of about `files` YAML files into `root` (an empty folder)."""
    counts = Counts.of(files)
    for folder in ("functions", "pipelines", "jobs", "src", "data"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "data" / "raw.csv").write_text("id,value\n1,2\n", "utf-8")
    (root / "requirements.txt").write_text("numpy==1.26.4\n", "utf-8")
    (root / "project.yaml").write_text(project_yaml(), "utf-8")
    for i in range(counts.functions):
        write_function(root, i)
    for i in range(counts.pipelines):
        (root / "pipelines" / f"{pipeline_name(i)}.yaml").write_text(
            pipeline_yaml(i, counts.functions), "utf-8")
    for i in range(counts.jobs):
        (root / "jobs" / f"job-{i:05d}.yaml").write_text(
            job_yaml(i, counts.functions, counts.pipelines), "utf-8")
    return counts


def function_name(i: int) -> str:
    return f"fn-{i:05d}"


def pipeline_name(i: int) -> str:
    return f"pipe-{i:05d}"


def is_package(i: int) -> bool:
    return i % 5 == 4


def handler_for(i: int, handler: str) -> str:
    """The handler name for function `i`: packages keep `evaluate` in a sub-module."""
    return f"steps.{handler}" if is_package(i) and handler == "evaluate" else handler


def project_yaml() -> str:
    return HEADER + """kind: project
name: bench
description: A generated project for the validate benchmark.
params:
  seed: 42
  label: target
defaults:
  base_image: python:3.11-slim
  resources: {cpu: 1, memory: 1Gi, timeout: 30m}
  env: {PYTHONHASHSEED: "0"}
results: {branch: runyard/results}
artifacts: {store: .runyard/artifacts}
secrets: [WAREHOUSE_TOKEN]
"""


def write_function(root: Path, i: int) -> None:
    name = function_name(i)
    module = f"fn_{i:05d}"
    if is_package(i):
        package = root / "src" / module
        package.mkdir(exist_ok=True)
        (package / "__init__.py").write_text(MODULE_CODE.format(name=name), "utf-8")
        (package / "steps.py").write_text(PACKAGE_STEPS.format(name=name), "utf-8")
        code = f"src/{module}"
    else:
        (root / "src" / f"{module}.py").write_text(MODULE_CODE.format(name=name), "utf-8")
        code = f"src/{module}.py"
    (root / "functions" / f"{name}.yaml").write_text(function_yaml(i, code), "utf-8")


def function_yaml(i: int, code: str) -> str:
    requirements = ("  requirements_file: requirements.txt\n" if i % 3 == 0
                    else "  requirements: [numpy==1.26.4, pandas==2.2.2]\n")
    return HEADER + f"""kind: function
name: {function_name(i)}
description: Generated function number {i}.
code: {code}
handler: train
environment:
  base_image: python:3.11-slim
{requirements}  system_packages: [libgomp1]
  setup: ["python -c 'print(1)'"]
  env: {{OMP_NUM_THREADS: "1", DEBUG: false}}
resources: {{cpu: 0.5, memory: 512Mi, timeout: 10m}}
labels: {{team: bench, tier: "{i % 3}"}}
"""


def pipeline_yaml(i: int, functions: int) -> str:
    a, b, c = ((i * 3 + k) % functions for k in range(3))
    return HEADER + f"""kind: pipeline
name: {pipeline_name(i)}
description: Prepare, train, evaluate and report, generated pipeline {i}.
params: {{test_size: 0.25, seed: {i}}}
steps:
  - name: prep
    function: {function_name(a)}
    handler: prepare
    params: {{sample: 500}}
    inputs: {{raw: data/raw.csv}}
    outputs: [train_set, test_set]
  - name: train
    function: {function_name(b)}
    inputs: {{train_set: step://prep/train_set}}
    outputs: [model]
    resources: {{cpu: 2, memory: 2Gi}}
    timeout: 1h
  - name: evaluate
    function: {function_name(b)}
    handler: {handler_for(b, "evaluate")}
    after: [train]
    inputs: {{model: step://train/model, test_set: step://prep/test_set}}
    outputs: [metrics]
  - name: compare
    function: {function_name(c)}
    handler: {handler_for(c, "evaluate")}
    after: [prep]
    inputs: {{model: step://train/model}}
    outputs: [baseline]
    retries: 2
  - name: report
    function: {function_name(c)}
    after: [evaluate, compare]
    params: {{title: Report {i}}}
    inputs: {{metrics: step://evaluate/metrics, baseline: step://compare/baseline}}
"""


def job_yaml(i: int, functions: int, pipelines: int) -> str:
    if i % 2 == 0:
        run = f"{{pipeline: {pipeline_name(i % pipelines)}}}"
    else:
        f = i % functions
        run = f"{{function: {function_name(f)}, handler: {handler_for(f, 'evaluate')}}}"
    return HEADER + f"""kind: job
name: job-{i:05d}
description: Generated job {i}.
labels: {{team: bench}}
run: {run}
params: {{epochs: {10 + i % 40}}}
inputs: {{train_set: data/raw.csv}}
{hyper_yaml(i)}{triggers_yaml(i)}retries: 1
timeout: 2h
parallel: 2
"""


def hyper_yaml(i: int) -> str:
    strategy = ("grid", "random", "list")[i % 3]
    if strategy == "list":
        params = "{lr: [0.01, 0.1, 0.3], depth: [3, 5, 8]}"
        exclude = ""
    else:
        params = "{lr: [0.01, 0.1, 0.3], depth: [3, 5, 8], booster: [gbtree, dart]}"
        exclude = "  exclude: [{lr: 0.01, depth: 8}, {booster: dart, depth: 3}]\n"
    return f"""hyper:
  strategy: {strategy}
  params: {params}
{exclude}  max_trials: 6
  parallel: 2
  selector: max.accuracy
  stop_condition: accuracy >= 0.95 and loss < 0.1
  max_errors: 2
"""


def triggers_yaml(i: int) -> str:
    match i % 4:
        case 0:
            return 'triggers:\n  push: {paths: ["src/**", "data/**"]}\n'
        case 1:
            return 'triggers:\n  schedule: "0 3 * * *"\n'
        case 2:
            return ("triggers:\n  push: true\n"
                    "  schedule: {cron: '*/15 9-17 * * 1-5', timezone: Europe/Paris}\n")
    return ""
