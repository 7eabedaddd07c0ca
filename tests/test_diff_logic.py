"""The logic of `runyard diff` on hand-built records: joining trials and steps, one-sided
runs, changes and percentages, better or worse by direction, causes and --fail-if."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from runner.errors import RunyardError
from runner.record.index import row_of
from runner.record.model import (
    Metadata,
    Params,
    RunInput,
    RunRecord,
    Spec,
    Status,
    StepSummary,
    TrialSummary,
)
from runner.views.diff import change_of, diff_runs, needed, parse_better
from runner.views.diff_render import diff_dict, markdown, plain_lines

A, B = "a" * 40, "b" * 40


def record(uid: str, revision: str, *, job: str = "fit", results: Mapping[str, Any] | None = None,
           parent: str | None = None, iteration: int = 0, params: Mapping[str, Any] | None = None,
           trials: tuple[TrialSummary, ...] = (), steps: tuple[StepSummary, ...] = (),
           selector: str | None = None, state: str = "completed", start: str = "2026-01-01",
           step_params: Mapping[str, Any] | None = None, **spec: Any) -> RunRecord:
    best = max(trials, key=lambda t: t.results.get("accuracy", 0)).iteration if trials else None
    return RunRecord(
        Metadata(uid=uid, name=job, project="p", job=job, iteration=iteration, parent=parent),
        Spec(revision=revision, params=Params(resolved=dict(params or {}),
                                              step=dict(step_params or {})),
             hyper={"selector": selector} if selector else None, **spec),
        Status(state=state, start=start, results=dict(results or {}), trials=trials,  # type: ignore[arg-type]
               steps=steps, best_iteration=best))


def trial(iteration: int, uid: str, params: Mapping[str, Any], accuracy: float) -> TrialSummary:
    return TrialSummary(iteration=iteration, uid=uid, state="completed", params=dict(params),
                        results={"accuracy": accuracy})


def test_trials_are_joined_by_their_params_and_one_sided_ones_listed() -> None:
    old = record("p1", A, selector="max.accuracy", results={"accuracy": 0.5},
                 trials=(trial(1, "t1", {"depth": 1}, 0.5), trial(2, "t2", {"depth": 2}, 0.4)))
    new = record("p2", B, selector="max.accuracy", results={"accuracy": 0.6},
                 trials=(trial(1, "u1", {"depth": 2}, 0.3), trial(2, "u2", {"depth": 3}, 0.6)))
    (job,) = diff_runs([old, new], A, B).jobs
    assert [(p.label, p.old_uid, p.new_uid) for p in job.pairs] == [
        ("best", "p1", "p2"), ("trial depth=2", "t2", "u1")]
    joined = job.pairs[1].changes[0]
    assert (joined.old, joined.new, joined.verdict) == (0.4, 0.3, "worse")
    assert joined.change == pytest.approx(-0.1) and joined.percent == pytest.approx(-25.0)
    assert [(p.label, p.old_uid) for p in job.only_old] == [("trial depth=1", "t1")]
    assert [(p.label, p.new_uid) for p in job.only_new] == [("trial depth=3", "u2")]
    lines = plain_lines(diff_runs([old, new], A, B))
    assert "  only in A: trial depth=1 t1 (completed)" in lines
    assert any(line.startswith("  best #1 -> #2  accuracy") for line in lines)


def test_steps_are_joined_by_name_with_their_own_results() -> None:
    old = record("p1", A, steps=(StepSummary("prep", "s1", "completed"),))
    new = record("p2", B, steps=(StepSummary("prep", "s2", "completed"),))
    children = [record("s1", A, parent="p1", results={"rows": 10}),
                record("s2", B, parent="p2", results={"rows": 12})]
    (job,) = diff_runs([old, new, *children], A, B).jobs
    step = next(p for p in job.pairs if p.label == "step prep")
    assert (step.old_uid, step.new_uid, step.changes[0].change) == ("s1", "s2", 2.0)


def test_causes_of_a_pipeline_are_named_by_step() -> None:
    old = record("p1", A, steps=(StepSummary("prep", "s1", "completed"),
                                 StepSummary("train", "s2", "completed")))
    new = record("p2", B, steps=(StepSummary("prep", "u1", "completed"),
                                 StepSummary("train", "u2", "completed")))
    children = [record("s1", A, parent="p1", function="prep", code={"src/p.py": "1"}),
                record("s2", A, parent="p1", function="train", step_params={"lr": 0.1},
                       code={"src/t.py": "1"}),
                record("u1", B, parent="p2", function="prep", code={"src/p.py": "1"}),
                record("u2", B, parent="p2", function="train", step_params={"lr": 0.2},
                       code={"src/t.py": "2"})]
    (job,) = diff_runs([old, new, *children], A, B).jobs
    assert [tuple(c) for c in job.causes] == [("params", "step train", "lr 0.1 -> 0.2"),
                                              ("code", "step train", "src/t.py")]


def test_only_the_runs_at_the_revisions_their_steps_and_first_trial_are_read() -> None:
    runs = [record("p1", A, trials=(trial(1, "t1", {"d": 1}, 0.5), trial(2, "t2", {"d": 2}, 0.4))),
            record("t2", A, parent="p1", iteration=2),
            record("t1", A, parent="p1", iteration=1, steps=(StepSummary("s", "s9", "completed"),)),
            record("s9", A, parent="t1"), record("p2", B, job="other"), record("p3", "c" * 40)]
    rows = [row_of(r) for r in runs]
    assert sorted(needed(rows, {A, B}, None)) == ["p1", "p2", "s9", "t1"]  # the first trial only
    assert needed(rows, {A, B}, "other") == ["p2"]


def test_a_job_at_one_revision_only_is_listed_with_no_counterpart() -> None:
    (job,) = diff_runs([record("n1", B, results={"loss": 1.0})], A, B).jobs
    assert job.old is None and not job.pairs and job.only_new[0].new_uid == "n1"
    assert "job fit: no run -> n1 (completed)" in plain_lines(diff_runs(
        [record("n1", B, results={"loss": 1.0})], A, B))


@pytest.mark.parametrize(("old", "new", "change", "percent"), [
    (0, 0, 0.0, 0.0), (0, 0.5, 0.5, None), (2, 3, 1.0, 50.0), (-2, -1, 1.0, 50.0)])
def test_percentage_of_the_old_value_none_from_zero(old: float, new: float, change: float,
                                                   percent: float | None) -> None:
    found = change_of("x", old, new, None)
    assert found.change == change and found.percent == percent


def test_better_or_worse_follows_the_direction() -> None:
    assert change_of("acc", 0.5, 0.6, "max").verdict == "better"
    assert change_of("acc", 0.5, 0.4, "max").verdict == "worse"
    assert change_of("loss", 0.5, 0.4, "min").verdict == "better"
    assert change_of("loss", 0.5, 0.6, "min").verdict == "worse"
    assert change_of("loss", 0.5, 0.5, "min").verdict == "same"
    assert change_of("other", 0.5, 0.6, None).verdict == ""


def test_the_selector_gives_the_direction_and_better_overrides_it() -> None:
    old = record("o", A, selector="min.loss", results={"loss": 1.0, "acc": 0.5})
    new = record("n", B, selector="min.loss", results={"loss": 2.0, "acc": 0.6})
    (job,) = diff_runs([old, new], A, B).jobs
    assert [c.verdict for c in job.pairs[0].changes] == ["worse", ""]
    (job,) = diff_runs([old, new], A, B, better=parse_better(["max.loss", "max.acc"])).jobs
    assert [c.verdict for c in job.pairs[0].changes] == ["better", "better"]
    with pytest.raises(RunyardError, match=r"max\.RESULT or min\.RESULT"):
        parse_better(["best.acc"])
    with pytest.raises(RunyardError) as caught:  # a typo would change no verdict, silently
        diff_runs([old, new], A, B, better=parse_better(["min.los"]))
    assert str(caught.value) == ("--better min.los: no run compared has los as a number at both "
                                 "revisions; did you mean min.loss? (results: acc, loss)")


def test_a_result_that_is_not_a_number_has_no_change() -> None:
    old = record("o", A, results={"model": "v1", "ok": True})
    new = record("n", B, results={"model": "v2", "ok": False})
    changes = diff_runs([old, new], A, B).jobs[0].pairs[0].changes
    assert [(c.change, c.percent, c.verdict) for c in changes] == [(None, None, "")] * 2
    assert "run  model   v1    v2     changed" in "\n".join(plain_lines(diff_runs([old, new], A, B)))


def test_fail_if_is_evaluated_on_each_pairs_changes() -> None:
    old = record("o", A, results={"accuracy": 0.9, "loss": 0.1})
    new = record("n", B, results={"accuracy": 0.85, "loss": 0.1})
    crossed = diff_runs([old, new], A, B, fail_if="accuracy < -0.01")
    assert [(c.job, c.label, round(c.changes["accuracy"], 6)) for c in crossed.crossings] == [
        ("fit", "", -0.05)]
    assert not diff_runs([old, new], A, B, fail_if="accuracy < -0.1").crossings
    assert not diff_runs([old, new], A, B, fail_if="loss > 0").crossings
    with pytest.raises(RunyardError, match="no run compared has f1 as a number"):
        diff_runs([old, new], A, B, fail_if="f1 < 0")
    with pytest.raises(RunyardError, match="--fail-if 'accuracy <'"):
        diff_runs([old, new], A, B, fail_if="accuracy <")


def test_causes_name_params_inputs_code_environment_and_image() -> None:
    old = record("o", A, params={"scale": 1, "seed": 1}, results={"x": 1},
                 function="f", env_hash="sha256:" + "1" * 64, image_id="sha256:" + "3" * 64,
                 inputs={"data": RunInput("data.csv", "sha256:" + "5" * 64)},
                 code={"functions/f.yaml": "aa", "src/f.py": "bb"})
    new = record("n", B, params={"scale": 2, "seed": 1}, results={"x": 2},
                 function="f", env_hash="sha256:" + "2" * 64, image_id="sha256:" + "3" * 64,
                 inputs={"data": RunInput("data.csv", "sha256:" + "6" * 64)},
                 code={"functions/f.yaml": "aa", "src/f.py": "cc"})
    causes = {c.what: c.detail for c in diff_runs([old, new], A, B).jobs[0].causes}
    assert causes == {"params": "scale 1 -> 2", "environment": "sha256:111111111111 -> "
                      "sha256:222222222222", "input": "data: data.csv sha256:555555555555 -> "
                      "data.csv sha256:666666666666", "code": "src/f.py"}


def test_code_of_older_records_is_looked_up_by_revision() -> None:
    old, new = record("o", A, function="f"), record("n", B, function="f")
    code = {A: {"src/f.py": "1"}, B: {"src/f.py": "2"}}
    (job,) = diff_runs([old, new], A, B, code_at=lambda rev, fn: code[rev]).jobs
    assert [(c.what, c.detail) for c in job.causes] == [("code", "src/f.py")]
    assert "same params" in plain_lines(diff_runs([old, new], A, B))[3]


def test_the_newest_run_that_succeeded_is_compared() -> None:
    older = record("o1", B, results={"x": 1}, start="2026-01-01T00:00")
    failed = record("o2", B, results={}, state="failed", start="2026-01-02T00:00")
    (job,) = diff_runs([older, failed, record("a", A, results={"x": 0})], A, B).jobs
    assert job.new is not None and job.new.metadata.uid == "o1"


def test_an_unknown_job_or_one_without_results_at_either_side() -> None:
    runs = [record("o", A, results={"x": 1})]
    with pytest.raises(RunyardError, match="job 'nope' has no results on the results branch"):
        needed([row_of(r) for r in runs], {A, B}, "nope")
    with pytest.raises(RunyardError) as caught:
        needed([row_of(r) for r in runs], {A, B}, "fitt")
    assert str(caught.value) == ("job 'fitt' has no results on the results branch; did you mean "
                                 "'fit'? (jobs with results: fit)")
    with pytest.raises(RunyardError, match=f"job 'fit' has no results at {'c' * 12}"):
        diff_runs(runs, "c" * 40, B, job="fit")


def test_markdown_is_a_table_with_record_text_escaped() -> None:
    old = record("o", A, results={"<b>|x": 1.0})
    new = record("n", B, results={"<b>|x": 2.0}, selector="max.<b>|x")
    text = markdown(diff_runs([old, new], A, B))
    assert "| run | result | A | B | change | % | |" in text
    assert "| run | &lt;b&gt;\\|x | 1 | 2 | +1 | +100.00% | 🟢 better |" in text
    assert "<b>" not in text


def test_json_holds_every_pair_and_cause() -> None:
    old = record("o", A, results={"x": 1}, params={"k": 1})
    new = record("n", B, results={"x": 3}, params={"k": 2})
    data = diff_dict(diff_runs([old, new], A, B, fail_if="x > 1"))
    assert data["crossed"] == [{"job": "fit", "label": "", "changes": {"x": 2.0}}]
    (job,) = data["jobs"]
    assert job["pairs"][0]["changes"][0]["change"] == 2.0
    assert job["causes"] == [{"what": "params", "where": "", "detail": "k 1 -> 2"}]
