"""The typed run and push records (runner.record.model): YAML in, the same YAML out, older
records read, broken ones refused by name. Fast: no git, no Docker."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.errors import RunyardError
from runner.record.model import (
    Artifact,
    Metadata,
    Params,
    PushRecord,
    PushRun,
    RunRecord,
    Spec,
    Status,
    StepSummary,
    Trigger,
    dump,
    load,
)
from runner.run.secrets import Secrets

EXAMPLES = sorted((Path(__file__).parent / "examples" / "valid").glob("run-*.yaml"))

# A record as runyard writes it today: every key, in the order `git show` shows them.
WRITTEN: dict[str, Any] = {
    "apiVersion": "runyard/v1", "kind": "run",
    "metadata": {"uid": "18c2f0a1b2c3d4", "name": "train", "project": "churn", "job": "train",
                 "iteration": 0, "parent": None, "labels": {"team": "ml"}, "attempt": 1},
    "spec": {"function": "trainer", "pipeline": None, "handler": "train", "command": None,
             "run_key": "ab" * 32,
             "params": {"project": {"seed": 42}, "pipeline": {}, "job": {"epochs": 3},
                        "override": {}, "step": {}, "resolved": {"seed": 42, "epochs": 3}},
             "inputs": {"raw": {"uri": "data/raw.csv", "hash": "sha256:" + "cd" * 32, "size": 12}},
             "hyper": None, "image": "runyard/churn-trainer:env-1", "image_id": "sha256:" + "0d" * 32,
             "env_hash": "1f" * 8, "revision": "df" * 20, "dirty": False,
             "trigger": {"kind": "manual"}, "backend": "docker",
             "resources": {"cpu": 2.0, "memory": 2147483648, "timeout": 3600.0}},
    "status": {"state": "completed", "reason": None, "start": "2026-11-21T13:02:22.849+00:00",
               "end": "2026-11-21T13:02:31.734+00:00", "duration": 8.885, "exit_code": 0,
               "results": {"accuracy": 0.93, "curve": [0.5, 0.9]},
               "artifacts": [{"key": "model", "kind": "model", "format": "pkl",
                              "hash": "sha256:" + "ee" * 32, "size": 7,
                              "uri": "store://sha256:" + "ee" * 32}],
               "error": None, "best_iteration": None, "trials": [], "logs": "log.txt",
               "log_truncated": False, "skipped_for": None, "runner": "host/12:345",
               "host": "host", "containers": ["runyard-18c2f0a1b2c3d4"]},
}

# The first records runyard wrote: no spec.pipeline or run_key, no runner, host or
# containers, artifacts without a format.
OLDEST: dict[str, Any] = {
    "apiVersion": "runyard/v1", "kind": "run",
    "metadata": {"uid": "0a1b2c", "name": "train", "project": "churn", "job": None,
                 "iteration": 0, "parent": None, "labels": {}, "attempt": 1},
    "spec": {"function": "trainer", "handler": "train", "command": None,
             "params": {"project": {}, "pipeline": {}, "job": {}, "override": {"x": 1},
                        "step": {}, "resolved": {"x": 1}},
             "inputs": {}, "hyper": None, "image": None, "image_id": None, "env_hash": None,
             "revision": "df" * 20, "dirty": True, "trigger": {"kind": "manual"},
             "backend": "local", "resources": {"timeout": 60.0}},
    "status": {"state": "running", "reason": None, "start": "2026-11-21T13:02:22.849+00:00",
               "end": None, "duration": None, "exit_code": None, "results": {},
               "artifacts": [{"key": "table", "kind": "file", "hash": "sha256:" + "ab" * 32,
                              "size": 3, "uri": "store://sha256:" + "ab" * 32}],
               "error": None, "best_iteration": None, "trials": [], "logs": "log.txt",
               "log_truncated": False, "skipped_for": None},
}


def _keys(data: Any) -> Any:
    """The keys of every mapping in `data`, in their order."""
    if isinstance(data, dict):
        return [(key, _keys(value)) for key, value in data.items()]
    if isinstance(data, list):
        return [_keys(item) for item in data]
    return None


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_example_reads_and_writes_back_the_same(path: Path) -> None:
    data = yaml.safe_load(path.read_text("utf-8"))
    record = RunRecord.from_dict(data, path.name)
    assert yaml.safe_load(record.to_yaml()) == data
    assert RunRecord.from_yaml(record.to_yaml(), path.name) == record


def test_a_record_as_runyard_writes_it_renders_byte_for_byte() -> None:
    record = RunRecord.from_dict(copy.deepcopy(WRITTEN), "run 18c2f0a1b2c3d4")
    assert record.to_yaml() == dump(WRITTEN)
    assert _keys(record.to_dict()) == _keys(WRITTEN)
    assert record.status.artifacts[0].format == "pkl" and record.spec.trigger.ref is None


def test_a_record_made_in_code_has_every_field_in_order() -> None:
    """What the executor builds: nothing left out but a pipeline's steps and unset limits,
    and a manual trigger's ref and detail."""
    record = RunRecord(
        Metadata(uid="u1", name="train", project="churn", job="train", iteration=0,
                 parent=None, labels={"team": "ml"}, attempt=1),
        Spec(function="trainer", handler="train", run_key="ab" * 32,
             params=Params(project={"seed": 42}, job={"epochs": 3}, resolved={"seed": 42, "epochs": 3}),
             image="runyard/churn-trainer:env-1", image_id="sha256:" + "0d" * 32, env_hash="1f" * 8,
             revision="df" * 20, trigger=Trigger("manual")),
        Status(state="running", start="2026-11-21T13:02:22.849+00:00", logs="log.txt",
               runner="host/12:345", host="host"))
    written = record.to_dict()
    assert _keys(written)[:2] == [("apiVersion", None), ("kind", None)]
    for part in ("metadata", "spec", "status"):
        assert list(written[part]) == [key for key in WRITTEN[part]], part
    assert written["spec"]["resources"] == {} and written["spec"]["trigger"] == {"kind": "manual"}
    piped = replace(record, status=replace(record.status, steps=(StepSummary("a", "u2", "completed"),)))
    assert list(piped.to_dict()["status"])[-1] == "steps"
    again = replace(record, metadata=replace(record.metadata, rerun_of="u0"))
    assert list(again.to_dict()["metadata"])[-1] == "rerun_of"  # a rerun's alone


def test_rerun_of_reads_back_and_is_none_in_older_records() -> None:
    assert RunRecord.from_dict(copy.deepcopy(OLDEST), "run 0a1b2c").metadata.rerun_of is None
    data = copy.deepcopy(WRITTEN)
    data["metadata"]["rerun_of"] = "18c2f0a1b2c3d3"
    record = RunRecord.from_dict(data, "run 18c2f0a1b2c3d4")
    assert record.metadata.rerun_of == "18c2f0a1b2c3d3" and record.to_dict() == data


def test_an_older_record_reads_with_defaults_and_keeps_its_shape() -> None:
    record = RunRecord.from_dict(copy.deepcopy(OLDEST), "run 0a1b2c")
    assert (record.spec.pipeline, record.spec.run_key) == (None, None)
    assert (record.status.runner, record.status.host, record.status.containers) == (None, None, ())
    assert record.status.artifacts[0].format is None
    assert record.to_dict() == OLDEST
    aborted = record.ended("aborted", "runner lost", "its runner ended before the run did").to_dict()
    assert aborted["status"]["state"] == "aborted" and aborted["status"]["duration"] > 0
    assert "runner" not in aborted["status"] and "format" not in aborted["status"]["artifacts"][0]


def test_an_older_push_record_reads_as_it_was_written() -> None:
    older = {"apiVersion": "runyard/v1", "kind": "push", "revision": "ab" * 20, "old": None,
             "ref": "refs/heads/main", "status": "invalid", "problems": ["x"], "plan": None,
             "runs": []}
    push = PushRecord.from_dict(older, "push of ab")
    assert (push.reason, push.received, push.finished) == (None, None, None)
    assert push.to_dict() == older


def test_a_push_record_made_in_code_has_every_field_in_order() -> None:
    push = PushRecord(revision="ab" * 20, old=None, ref="refs/heads/main", received="now",
                      runs=(PushRun("train", "u1", "completed"),))
    assert list(push.to_dict()) == ["apiVersion", "kind", "revision", "old", "ref", "received",
                                    "finished", "status", "reason", "problems", "plan", "runs"]
    assert push.to_dict()["runs"] == [{"job": "train", "uid": "u1", "state": "completed"}]


def _cut(text: str) -> str:
    return text[: len(text) // 2]


def _edited(change: str) -> str:
    data = copy.deepcopy(WRITTEN)
    if change == "state":
        data["status"]["state"] = "done"
    elif change == "missing":
        del data["status"]
    elif change == "unknown":
        data["spec"]["colour"] = "blue"
    elif change == "type":
        data["status"]["artifacts"][0]["size"] = "seven"
    elif change == "version":
        data["apiVersion"] = "runyard/v9"
    return yaml.safe_dump(data, sort_keys=False)


@pytest.mark.parametrize(("text", "said"), [
    (_cut(dump(WRITTEN).decode()), "is broken"),
    ("metadata: [unclosed", "not YAML"),
    ("just text", "not a mapping"),
    (_edited("state"), "status.state is 'done', not one of pending, running"),
    (_edited("missing"), "status is missing"),
    (_edited("unknown"), "spec.colour is not a field of it"),
    (_edited("type"), "status.artifacts[0].size is 'seven', not a whole number"),
    (_edited("version"), "of version 'runyard/v9': this runyard reads runyard/v1"),
], ids=["truncated", "not-yaml", "not-a-mapping", "state", "missing", "unknown", "type", "version"])
def test_a_broken_record_is_refused_by_its_uid(text: str, said: str) -> None:
    with pytest.raises(RunyardError, match="the record of run 18c2f0a1b2c3d4") as raised:
        RunRecord.from_yaml(text.encode(), "run 18c2f0a1b2c3d4")
    assert said in str(raised.value)


def test_masking_reaches_every_text_and_keeps_the_type() -> None:
    secret = "s3cr3t-value"
    data = copy.deepcopy(WRITTEN)
    data["metadata"]["labels"] = {"who": secret}
    data["spec"]["params"]["override"] = {secret: secret}
    data["spec"]["inputs"]["raw"]["uri"] = f"https://x/?token={secret}"
    data["status"].update(results={"leak": secret, "nested": [{"deep": secret}]},
                          error=f"failed with {secret}")
    data["status"]["artifacts"][0]["uri"] = f"s3://{secret}/model"
    masked = RunRecord.from_dict(data, "run x").masked(Secrets({"TOKEN": secret}).mask)
    assert secret not in masked.to_yaml().decode()
    assert masked.status.results["nested"] == [{"deep": "***"}]
    assert isinstance(masked.status.artifacts[0], Artifact) and masked.status.duration == 8.885


def test_ended_counts_the_duration_from_the_start() -> None:
    record = RunRecord.from_dict(copy.deepcopy(OLDEST), "run 0a1b2c")
    ended = record.ended("completed")
    assert ended.status.end is not None and ended.status.duration is not None
    assert ended.status.duration > 0 and ended.status.reason is None
    assert record.status.state == "running"  # a new record; the old one stays as it was
    assert not record.succeeded and ended.succeeded


SAFE_YAML = [
    "a: 1\nb: [1, 2.5, -3, 0x1f, 0o17, 1_000, .inf, .nan]\nc: {d: null, e: ~, f: true, g: 'no'}\n",
    "when: 2026-01-01T10:00:00Z\nday: 2026-01-01\nplain: 2026-01-01 x\nbin: !!binary aGk=\n",
    "x: &a {k: [1, 2]}\ny: *a\nz: [*a, *a]\n",
    "s: !!set {a, b}\no: !!omap [{a: 1}, {b: 2}]\np: !!str 12\nq: !!int '7'\nr: !!float 1\n",
    "? [1, 2]\n: unhashable\n",
    "a: &x [*x]\n",
    "base: &b {k: 1}\nmerged: {<<: *b, j: 2}\n",
    "- !!python/object:os.system echo\n",
    "",
    "--- 1\n",
    "a: 'yes'\nb: yes\nc: Off\nd: 012\ne: 1:20\n",
    "l0: &l0 [a, a, a, a, a, a, a, a, a]\nl1: &l1 [*l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0, *l0]\n"
    "l2: &l2 [*l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1, *l1]\nl3: [*l2, *l2, *l2, *l2, *l2, *l2, *l2]\n",
]


@pytest.mark.parametrize("text", SAFE_YAML)
def test_records_load_as_safe_loading_does(text: str) -> None:
    """The record loader's fast path gives what yaml.safe_load gives, or fails where it does
    (but for data that contains itself, which safe loading makes and a record never holds)."""
    try:
        expected: Any = yaml.safe_load(text)
    except yaml.YAMLError:
        with pytest.raises((yaml.YAMLError, TypeError)):
            load(text.encode())
        return
    if text.startswith(("? [1, 2]", "a: &x")):  # unhashable; contains itself
        with pytest.raises((yaml.YAMLError, TypeError)):
            load(text.encode())
        return
    assert load(text.encode()) == expected


def test_a_record_that_is_not_data_is_broken_not_a_bug() -> None:
    for text in ("? [1, 2]\n: x\n", "a: &x [*x]\n", "- !!python/object:os.system echo\n"):
        with pytest.raises(RunyardError, match="is broken"):
            RunRecord.from_yaml(text.encode(), "run x")
