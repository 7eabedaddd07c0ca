"""Run a pipeline: its steps as a DAG, each step a child run of the pipeline run.

Independent steps run in parallel (up to `parallel`); `step://STEP/OUTPUT`
inputs become the content hash of that step's artifact; a step that fails
fails the pipeline, its dependents are recorded `skipped` and never start,
while independent branches finish.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace

from runner.errors import RunyardError
from runner.project.model import Pipeline, Step, step_ref
from runner.record.model import RunRecord, StepSummary
from runner.record.results import new_uid
from runner.run.execute import Session, execute, new_record, skip, task_record
from runner.run.inputs import STORE_SCHEME
from runner.run.task import ParamLevels, Task


class PipelineRun:
    """The pipeline, its parameters and where its run stands in the records."""

    def __init__(self, session: Session, pipeline: Pipeline, params: ParamLevels, *,
                 name: str, job: str | None = None, labels: Mapping[str, str] | None = None,
                 parent: str | None = None, iteration: int = 0, parallel: int = 4,
                 retries: int = 0, inputs: Mapping[str, str] | None = None,
                 uid: str | None = None) -> None:
        self.session, self.pipeline, self.params = session, pipeline, params
        self.name, self.job, self.labels = name, job, dict(labels or {})
        self.parent, self.iteration, self.retries = parent, iteration, retries
        self.parallel = session.at_once(parallel)
        self.inputs = dict(inputs or {})  # the job's: every step may take them
        self.uid = uid or new_uid()
        self.step_uids = {step.name: new_uid() for step in pipeline.steps}
        self.done: dict[str, RunRecord] = {}

    def run(self) -> RunRecord:
        record = new_record(self.session, uid=self.uid, name=self.name, job=self.job,
                            iteration=self.iteration, parent=self.parent, labels=self.labels,
                            params=self.params)
        record = replace(record, spec=replace(record.spec, pipeline=self.pipeline.name))
        self.session.write(record)  # `running`, before any step: a child never lacks its parent
        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            running: dict[Future[RunRecord], Step] = {}
            while len(self.done) < len(self.pipeline.steps):
                self._start_ready(pool, running)
                if running:
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        self.done[running.pop(future).name] = future.result()
        return self.session.write(self._conclude(record), b"")

    def _start_ready(self, pool: ThreadPoolExecutor, running: dict[Future[RunRecord], Step]) -> None:
        started = {step.name for step in running.values()}
        progressed = True
        while progressed:
            progressed = False
            for step in self.pipeline.steps:
                if step.name in self.done or step.name in started:
                    continue
                upstream = [u for u in step.upstream() if self.pipeline.step(u)]
                if any(u not in self.done for u in upstream):
                    continue
                blocked = [u for u in upstream if not self.done[u].succeeded]
                if blocked or self.session.abort.is_set():
                    self.done[step.name] = self._never_started(step, blocked)
                    progressed = True
                elif len(running) < self.parallel:
                    running[pool.submit(self._run_step, step)] = step
                    started.add(step.name)
                    progressed = True

    def _run_step(self, step: Step) -> RunRecord:
        task = self.task(step)
        try:
            task = self._with_step_inputs(task)
        except RunyardError as error:
            return skip(self.session, task_record(self.session, task, self.step_uids[step.name]),
                        "failed", "input", str(error))
        return execute(self.session, task, self.step_uids[step.name])

    def task(self, step: Step) -> Task:
        project = self.session.project
        function = project.functions[step.function]
        params = ParamLevels(project=self.params.project, pipeline=self.params.pipeline,
                             job=self.params.job, override=self.params.override,
                             trial=self.params.trial, step=step.params)
        return Task(name=step.name, function=function,
                    handler=None if function.command or function.is_notebook
                    else (step.handler or function.handler),
                    params=params, inputs={**self.inputs, **step.inputs}, job=self.job,
                    labels=self.labels,
                    retries=step.retries if step.retries is not None else self.retries,
                    resources=step.resources.over(function.resources.over(project.resources)),
                    iteration=self.iteration, parent=self.uid,
                    placement=job.placement if (job := project.jobs.get(self.job or "")) else ())

    def _with_step_inputs(self, task: Task) -> Task:
        inputs = {}
        for name, uri in task.inputs.items():
            ref = step_ref(uri)
            inputs[name] = uri if ref is None else self._artifact_of(ref[0], ref[1] or "")
        return replace(task, inputs=inputs)

    def _artifact_of(self, step: str, output: str) -> str:
        for artifact in self.done[step].status.artifacts:
            if artifact.key == output:
                return f"{STORE_SCHEME}{artifact.hash}"
        raise RunyardError(f"step {step!r} logged no artifact {output!r} for step://{step}/{output}")

    def _never_started(self, step: Step, blocked: list[str]) -> RunRecord:
        record = task_record(self.session, self.task(step), self.step_uids[step.name])
        if blocked:
            return skip(self.session, record, "skipped", "upstream_failed",
                        f"step {blocked[0]!r} did not complete")
        return skip(self.session, record, "aborted", "interrupted", "stopped by an interruption")

    def _conclude(self, record: RunRecord) -> RunRecord:
        steps = [self.done[step.name] for step in self.pipeline.steps]
        status = replace(record.status, steps=tuple(
            StepSummary(name=r.metadata.name, uid=r.metadata.uid, state=r.status.state,
                        reason=r.status.reason) for r in steps))
        for step_record in steps:  # later steps win: "the last step that produced it"
            if step_record.succeeded:
                status = replace(status, results={**status.results, **step_record.status.results},
                                 artifacts=status.artifacts + step_record.status.artifacts)
        record = replace(record, status=status)
        states = [r.status.state for r in steps]
        if "aborted" in states:
            return record.ended("aborted", "interrupted", "stopped by an interruption")
        failed = [r.metadata.name for r in steps if r.status.state == "failed"]
        if failed:
            return record.ended("failed", "step_failed", f"step {failed[0]!r} failed: "
                                f"{self.done[failed[0]].status.error}")
        return record.ended("completed")
