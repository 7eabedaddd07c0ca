"""`runs show` on records of every age: an older record lacks the fields runyard writes now
(spec.tree and code, params.trial, trigger.by); it reads, renders as it was read, and the
view says what it does not record."""

from __future__ import annotations

from runner.record.model import RunRecord
from runner.views.show import provenance_lines

OLDER = b"""apiVersion: runyard/v1
kind: run
metadata: {uid: 0193aa, name: tune, project: p, job: tune, iteration: 1, parent: 0193a0}
spec:
  function: fit
  handler: fit
  params: {project: {seed: 7}, override: {depth: 2}, resolved: {seed: 7, depth: 2}}
  inputs: {points: {uri: data/points.csv, hash: 'sha256:abc', size: 12}}
  image: runyard/p:1234
  image_id: sha256:5678
  env_hash: '1234'
  revision: 9f9a72
  trigger: {kind: push, ref: refs/heads/main}
status: {state: completed, start: '2026-01-01T00:00:00', results: {accuracy: 0.5}}
"""


def test_an_older_record_reads_and_renders_as_it_was_read() -> None:
    record = RunRecord.from_yaml(OLDER, "run 0193aa")
    assert record.spec.tree is None and record.spec.code == {} and record.spec.trigger.by is None
    assert record.spec.params.trial == {}
    data = record.to_dict()
    assert "tree" not in data["spec"] and "code" not in data["spec"]
    assert "trial" not in data["spec"]["params"] and "by" not in data["spec"]["trigger"]


def test_the_view_of_an_older_record_says_what_it_lacks() -> None:
    lines = provenance_lines(RunRecord.from_yaml(OLDER, "run 0193aa"), "runyard/results")
    fields = {line.split()[0]: line.split(None, 1)[1] for line in lines if line.startswith("  ")}
    assert fields["tree"] == "(not recorded)" and fields["code"] == "(not recorded)"
    assert fields["trigger"] == "push refs/heads/main"
    assert fields["override"] == '{"depth": 2}'
    assert fields["points"] == "data/points.csv  sha256:abc  12 bytes"
    assert fields["image"] == "runyard/p:1234 (sha256:5678)"
    assert lines[-1] == "record: git show runyard/results:runs/aa/0193aa/run.yaml"
