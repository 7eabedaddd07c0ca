"""Open a session for running: which revision, which code, which backend, which stores."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path

from runner.build.builder import LocalImages, build_images, needs_and_images
from runner.build.engine import DockerEngine, connect
from runner.errors import RunyardError
from runner.git import commit_of, user_name
from runner.project.checks import handler_problem, input_problem
from runner.project.environment import function_files
from runner.project.loader import load_project
from runner.project.model import Function, Project
from runner.project.policy import Policy
from runner.project.source import DirectorySource, GitSource, ProjectSource, prepare_state_dir
from runner.record.artifacts import ArtifactStore
from runner.record.model import Trigger
from runner.record.owner import Owner
from runner.record.results import ResultsBranch
from runner.run.backends import Backend, DockerBackend, LocalBackend
from runner.run.execute import ImageRef, OnLine, Session, forget_live
from runner.run.network import run_network
from runner.run.reconcile import (
    reconcile_containers,
    reconcile_pushes,
    reconcile_records,
    reconcile_scratch,
    reconcile_store,
)
from runner.run.secrets import Secrets
from runner.run.snapshot import make_snapshot, remove_tree
from runner.run.swarm import SwarmBackend, reconcile_services, swarm_problem


def workspace_of(source: ProjectSource) -> Path:
    """The folder relative paths of the project settings (artifact store) start from."""
    return source.state_dir.parent


@contextmanager
def session_for(source: ProjectSource, git_dir: Path, *, backend: str | None = None,
                on_line: OnLine = lambda name, line: None, job: str | None = None,
                handler: str | None = None,
                inputs: Mapping[str, str] | None = None) -> Iterator[Session]:
    """A session for runs asked for by hand, of the project `open_project` opened (closed
    with the session): they always run, and the person who asks is the operator
    (`Policy.personal`). `job`, when given, is what will run: a job or a function of the
    project, refused here when it is neither, when its function has no `handler` (the
    one asked for instead of the default), or when one of `inputs` is malformed or not in
    the project."""
    with closing(source):
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="runyard-by") as aside:
            by = aside.submit(user_name, git_dir)  # git is asked while the project loads
            project = load_project(source)
        if job is not None:  # before any image is built
            require_runnable(project, source, job, handler, inputs)
        trigger = Trigger("manual", by=by.result() or _login())
        with open_session(source, git_dir, project, Policy.personal(), backend=backend,
                          trigger=trigger, on_line=on_line, job=job) as session:
            yield session


def require_runnable(project: Project, source: ProjectSource, target: str,
                     handler: str | None, inputs: Mapping[str, str] | None = None) -> None:
    """`target` is a job or function of the project, its function has `handler` (when
    one is asked for instead of the default), and each of `inputs` (given on top of the
    job's) names what an input may; else the user hears why."""
    project.require_target(target)
    for key, uri in (inputs or {}).items():
        wrong = input_problem(project, source, uri)
        if wrong is not None:
            raise RunyardError(f"input {key}: {wrong}")
    job = project.jobs.get(target)
    function = job.run.function if job is not None else target
    if not handler or function is None:
        return  # a pipeline job: its run says that each step names its handler
    why = handler_problem(project, source, project.functions[function], handler)
    if why is not None:
        raise RunyardError(f"cannot run {target!r} with handler {handler!r}: {why}")


@contextmanager
def open_session(source: ProjectSource, git_dir: Path, project: Project, policy: Policy, *,
                 backend: str | None = None, functions: Sequence[str] = (),
                 trigger: Trigger | None = None, memoize: bool = False,
                 on_line: OnLine = lambda name, line: None,
                 job: str | None = None) -> Iterator[Session]:
    """Snapshot, backend (images built for `functions`, or all) and stores for runs of
    `job` (or of anything).

    First it puts right what lost runners left (records, containers, scratch).
    """
    chosen = backend_of(project, job, backend)
    if chosen == "local" and not policy.local_backend:
        raise RunyardError("the local backend runs code on this host, outside any container: "
                           "this runner's operator does not allow it for runs it starts")
    with closing(ResultsBranch(git_dir, project.results_branch)) as results:
        live_dir = prepare_state_dir(source.state_dir) / "live"
        live_dir.mkdir(exist_ok=True)
        scratch_root = git_dir / "runyard" / "scratch"

        def note(line: str) -> None:
            on_line("setup", line)

        owner = Owner.current()
        shared_runs = _shared_runs(project, policy, owner) if chosen == "swarm" else None
        workdir = scratch_root / owner.folder_name
        workdir.mkdir(parents=True, exist_ok=True)
        revision = source.revision or _head(git_dir)
        try:
            # The code snapshot is made while the leftovers of lost runners
            # are put right and the engine is asked for the images: they do not meet.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="runyard-snapshot") as aside:
                snapshot = aside.submit(make_snapshot, source, workdir / "code", None
                                        if policy.own_checkout else project.limits.within(policy.limits).disk)
                lost = reconcile_scratch(scratch_root, note)
                staged = shared_runs.parent if shared_runs else _staged_root(project, policy)
                if staged is not None:  # (what a lost swarm runner staged, whatever this backend)
                    lost += reconcile_scratch(staged, note)
                aborted = reconcile_records(results, note)
                reconcile_pushes(results, note)
                store = ArtifactStore(policy.store_for(project), workspace_of(source))
                reconcile_store(store, note)
                for uid in aborted:
                    forget_live(live_dir, uid)
                runner: Backend = LocalBackend()
                images: dict[str, ImageRef] = {}
                bridge: str | None = None
                # A lost runner (its scratch folder, its runs still `running`) may have left
                # containers and swarm services, whatever this session's backend.
                lost_runner = bool(lost or aborted)
                if chosen == "docker":
                    runner, images, bridge = _docker(project, source, functions, policy,
                                                     on_line, services=lost_runner)
                elif chosen == "swarm":
                    runner, images = _swarm(project, source, functions, policy, on_line)
                elif lost_runner:
                    _reconcile_containers_if_engine(note)
                code = snapshot.result()
        except BaseException:
            remove_tree(workdir)  # the snapshot is done (or failed): the executor waited for it
            if shared_runs is not None:
                remove_tree(shared_runs)
            raise
        session: Session | None = None
        try:
            session = Session(
                project=project, code=code, workdir=workdir, backend=runner,
                store=store,
                results=results, revision=revision,
                trigger=trigger or Trigger("manual"), on_line=on_line, images=images,
                dirty=isinstance(source, DirectorySource), memoize=memoize,
                code_files=_code_files(source), live_dir=live_dir, shared_runs=shared_runs,
                policy=policy, run_network=bridge,
                tree=source.tree() if isinstance(source, GitSource) else None,
                secrets=Secrets.available(project.secrets, policy, os.environ), owner=owner)
            yield session
        finally:
            if session is not None:
                session.aside.shutdown(wait=True)  # the runs' folders, removed aside
            remove_tree(workdir)  # while the engine removes the last run's container
            runner.close()
            if shared_runs is not None:
                remove_tree(shared_runs)


def backend_of(project: Project, job: str | None, given: str | None = None) -> str:
    """Where runs of `job` go: the backend given (command line), else the job's, else the
    project's (execution.backend)."""
    found = project.jobs.get(job or "")
    return given or (found.backend if found else None) or project.backend


def _shared_runs(project: Project, policy: Policy, owner: Owner) -> Path | None:
    """This runner's folder for staging runs in the folder every swarm node mounts
    (execution.shared), made now; None without one."""
    if project.shared is None:
        return None
    refusal = policy.shared_refusal(project.shared)
    if refusal:
        raise RunyardError(f"{project.file}: {refusal}")
    if not Path(project.shared).is_dir():
        raise RunyardError(f"{project.file}: execution.shared: {project.shared} is not a folder "
                           "here; mount the folder every node of the swarm shares there")
    folder = Path(project.shared) / "runs" / owner.folder_name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunyardError(f"{project.file}: execution.shared: cannot make {folder}: "
                           f"{error.strerror}") from error
    return folder


def _staged_root(project: Project, policy: Policy) -> Path | None:
    """The folder of the runners' staging folders in the project's shared folder (on a
    backend other than the swarm); None without one, or where it is not allowed."""
    if project.shared is None or policy.shared_refusal(project.shared):
        return None
    return Path(project.shared) / "runs"


def _reconcile_containers_if_engine(note: Callable[[str], None]) -> None:

    try:
        engine = connect(note, start=False)
    except RunyardError:
        return  # no engine, so no container of anyone's
    _reconcile_engine(engine, note)


def _reconcile_engine(engine: DockerEngine, note: Callable[[str], None],
                      services: bool = True) -> None:
    """Remove lost runners' containers and, with `services` where the engine is a swarm
    manager, their services, secrets, configs and volumes: whatever backend this session
    runs on (a job may name its own), what a lost runner left on any of them goes. (The
    swarm's part costs some 12 ms of engine calls: a run on Docker asks it only when it
    found a lost runner.)"""
    reconcile_containers(engine, note)
    if services and swarm_problem(engine) is None:
        reconcile_services(engine, note)


def _docker(project: Project, source: ProjectSource, functions: Sequence[str], policy: Policy,
            on_line: OnLine, services: bool) -> tuple[Backend, dict[str, ImageRef], str | None]:
    engine, images, bridge = _built(project, source, functions, policy, on_line, services)
    return DockerBackend(engine), images, bridge


def _swarm(project: Project, source: ProjectSource, functions: Sequence[str], policy: Policy,
           on_line: OnLine) -> tuple[Backend, dict[str, ImageRef]]:
    """The environment images built here; each run's image (code on top) goes to the registry."""
    if not project.registry:
        raise RunyardError(f"{project.file}: the swarm backend needs a registry every node "
                           "pulls from: set execution.registry (HOST:PORT)")
    refusal = policy.registry_refusal(project.registry)
    if refusal:
        raise RunyardError(f"{project.file}: {refusal}")
    engine, images, _ = _built(project, source, functions, policy, on_line, services=True)
    backend = SwarmBackend(engine, project.registry,
                           scratch_size=project.limits.within(policy.limits).disk)
    if project.shared is None:
        on_line("setup", f"swarm: runs are pinned to this node (node.id=={backend.node_id}): "
                "their inputs and outputs are on its disk; set execution.shared to a folder "
                "every node mounts to spread them over the swarm")
    return backend, images


def _built(project: Project, source: ProjectSource, functions: Sequence[str], policy: Policy,
           on_line: OnLine, services: bool) -> tuple[DockerEngine, dict[str, ImageRef], str | None]:
    """The engine, the images (built where missing), and the network the builds' steps
    and `bridge` runs join: runyard's (runner.run.network) for the runs a push starts;
    None, the engine's default bridge, for the operator's own or where the operator allows."""
    engine = connect(lambda line: on_line("setup", line))
    _reconcile_engine(engine, lambda line: on_line("setup", line), services)
    bridge = None if policy.private_network else run_network(engine)
    needs, local = needs_and_images(engine, project, source, functions)
    outcomes = build_images(engine, project, needs, local, source.state_dir / "builds",
                            lambda tag, line: on_line("build", line), policy=policy,
                            network=bridge)
    failed = [o.error for o in outcomes if o.error]
    if failed:
        raise RunyardError("\n".join(failed))
    built = [o.need.spec.tag for o in outcomes if o.action == "built"]
    ids = {**local.ids, **LocalImages.of(engine, built).ids}
    images = {name: ImageRef(n.spec.tag, ids[n.spec.tag], n.spec.env_hash)
              for n in needs for name in n.functions}
    return engine, images, bridge


def _code_files(source: ProjectSource) -> Callable[[Function], dict[str, str | None] | None]:
    """A function's files at a revision and their git object ids; None for a working tree."""
    if not isinstance(source, GitSource):
        return lambda function: None

    def code_files(function: Function) -> dict[str, str | None]:
        return {path: source.object_id(path) for path in function_files(function, source)}

    return code_files


def _login() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid
        return None


def _head(git_dir: Path) -> str | None:
    return commit_of(git_dir, "HEAD")
