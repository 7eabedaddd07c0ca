"""Put right what a lost runner left: records still `running` (runs, pushes), containers,
scratch.

Every command that starts runs does this first. A runner is lost when it ran on
this host and its process is gone (runner.record.owner); runs of runners on
other hosts are left to those hosts.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from runner.build.engine import DockerEngine, EngineError
from runner.errors import RunyardError
from runner.record.artifacts import ArtifactStore
from runner.record.model import now
from runner.record.owner import Owner
from runner.record.results import ResultsBranch
from runner.run import scratch

OnNote = Callable[[str], None]
LOST = "runner lost"
RUNNER_LABEL = "dev.runyard.runner"
ENDED = ("exited", "dead")  # a container's states (the engine's listing) once its process ended


def reconcile_records(results: ResultsBranch, on_note: OnNote) -> list[str]:
    """Record `aborted` every run whose runner is lost; their uids."""
    aborted = []
    for uid, runner in results.running().items():
        owner = Owner.parse(runner)
        if owner is None or not owner.is_lost():
            continue
        try:
            record = results.read(uid)
        except RunyardError:
            continue
        if record.status.state == "running":
            results.write(record.ended("aborted", LOST,
                                       f"its runner ({runner}) ended before the run did"))
            aborted.append(uid)
    if aborted:
        on_note(f"recorded {len(aborted)} run(s) of a lost runner as aborted")
    return aborted


def reconcile_pushes(results: ResultsBranch, on_note: OnNote) -> int:
    """Record `failed` every push whose runner is lost (its jobs are then planned again by
    the next push: runner.triggers.push.plan_base); how many."""
    failed = 0
    for (revision, ref), runner in results.running_pushes().items():
        owner = Owner.parse(runner)
        if owner is None or not owner.is_lost():
            continue
        try:
            push = results.push(revision, ref)
        except RunyardError:
            continue
        if push is not None and push.status == "running":
            reason = f"{LOST}: its runner ({runner}) ended before the push was processed"
            results.write_push(replace(push, status="failed", reason=reason, finished=now()),
                               newest=False)
            failed += 1
    if failed:
        on_note(f"recorded {failed} push(es) of a lost runner as failed")
    return failed


def reconcile_scratch(root: Path, on_note: OnNote) -> list[Owner]:
    """Remove the scratch folders (and their mounts) of lost runners under `root`, and the
    empty images they were making; those runners (of the folders)."""
    lost: list[Owner] = []
    if not root.is_dir():
        return lost
    for unfinished, maker in scratch.unfinished_templates(root / scratch.TEMPLATES).items():
        if maker.is_lost():
            unfinished.unlink(missing_ok=True)
    for folder in root.iterdir():
        owner = Owner.from_folder_name(folder.name)
        if owner is None or not owner.is_lost():
            continue
        for mount in sorted(scratch.mounted_under(folder), reverse=True):
            scratch.remove(mount, mounted=True)
        shutil.rmtree(folder, ignore_errors=True)
        on_note(f"removed the scratch of lost runner {owner}")
        lost.append(owner)
    return lost


def reconcile_store(store: ArtifactStore, on_note: OnNote) -> None:
    """Remove what lost runners were copying into the artifact store."""
    lost = store.remove_incoming_of_lost()
    if lost:
        on_note(f"removed {len(lost)} partial artifact(s) of lost runner(s) "
                f"{', '.join(sorted({str(owner) for owner in lost}))}")


def reconcile_containers(engine: DockerEngine, on_note: OnNote) -> None:
    """Remove the containers of lost runners (they carry their runner in a label).

    Read from one listing, never container by container: other runners' containers come
    and go meanwhile. One that has ended is only the engine's to remove still (a run's
    container goes by itself once the engine has taken it down, its runner gone or not):
    it is removed without a word; one that runs or never started is said.
    """
    for found in engine.containers({"label": RUNNER_LABEL}):
        owner = Owner.parse((found.get("Labels") or {}).get(RUNNER_LABEL, ""))
        if owner is None or not owner.is_lost() or found.get("State") == "removing":
            continue
        try:
            engine.remove_container(found["Id"])
        except EngineError as error:
            if error.status in (404, 409):  # gone, or being removed by another runner
                continue
            raise
        if found.get("State") not in ENDED:
            name = (found.get("Names") or [found["Id"][:12]])[0].lstrip("/")
            on_note(f"removed container {name} of lost runner {owner}")
