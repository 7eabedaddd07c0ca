"""The swarm backend: each run a replicated-job service of a Docker Swarm, on any node;
trial workers (runner/run/workers.py) as services on this node (SwarmWorkers).

What a run needs travels without a shared disk of the runner's where Swarm can carry
it: the code snapshot and the runtime in a thin image layer per revision (pushed to the
project's registry, pinned by digest), the spec as a Swarm config, secrets as Swarm
secrets; its working folder and /tmp are tmpfs volumes of the node it runs on. Inputs
and outputs are files the runner writes and reads: with `execution.shared` (a folder
every node mounts at the same path) they are staged there (runner/run/execute.py) and
the task may go to any node; without it they stay in the runner's run folder and the
task is pinned to the runner's node (`node.id==`). README: "Swarm".
Retries stay runyard's: the service never restarts its task.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from runner.build.engine import (
    CALL_TIMEOUT,
    DockerEngine,
    EngineError,
    EngineTimeout,
    Json,
    Unreachable,
    registry_auth,
    registry_config,
)
from runner.build.inventory import LAYER_LABEL, drop_run_image
from runner.build.registry import Registry
from runner.errors import RunyardError
from runner.project.model import Limits, Resources
from runner.record.owner import Owner
from runner.run.backends import (
    CONTAINER_LAYOUT,
    LOG_FILE_LIMIT,
    NON_ROOT_ID,
    Exit,
    Launch,
    Layout,
    OnOutput,
    Placed,
    Ready,
    Unplaced,
    WorkerSpec,
    container_env,
    host_layout,
)
from runner.run.reconcile import RUNNER_LABEL

SWARM_LAYOUT = CONTAINER_LAYOUT._replace(secrets="/run/secrets")  # where Swarm mounts secrets
ISOLATED_NETWORK = "runyard-isolated"  # for `network: none`: an internal overlay, no way out
PIDS_LIMIT = 4096
FINAL_STATES = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned", "remove"})
WAITING_STATES = frozenset({"new", "pending", "allocated"})  # not yet on a node
NODE_CHECK_EVERY = 1.0  # seconds between two looks at the node a task is on
LOST_NODE_LOG_WAIT = 5.0  # seconds of silence before the rest of a lost node's log is given up
SCRATCH_VOLUMES = ("work", "tmp")  # a run's in-memory folders, volumes named after it
SERVICE_LABEL = "com.docker.swarm.service.id"  # the engine's, on a task's container
PROJECT_LABEL = "dev.runyard.project"  # runyard's, on every run's and worker's container


class TaskState(NamedTuple):
    """What the engine says of a service's one task."""

    state: str
    error: str | None
    exit_code: int | None
    container: str | None
    node: str | None

    @classmethod
    def of(cls, found: Mapping[str, Any]) -> TaskState:
        status = found.get("Status") or {}
        container = status.get("ContainerStatus") or {}
        return cls(status.get("State", "new"), status.get("Err"), container.get("ExitCode"),
                   container.get("ContainerID"), found.get("NodeID"))


def swarm_problem(engine: DockerEngine) -> str | None:
    """Why this engine cannot run swarm services, or None when it is a swarm manager."""
    info = engine.call("GET", "/info")
    swarm = (info.get("Swarm") if isinstance(info, dict) else None) or {}
    if swarm.get("ControlAvailable"):
        return None
    state = swarm.get("LocalNodeState", "inactive")
    if state == "active":
        return ("this Docker engine is a swarm worker, not a manager: run runyard on a manager "
                "node (`docker node ls` there lists them)")
    return (f"this Docker engine is not part of a swarm (state: {state}): make it a manager "
            "with `docker swarm init --advertise-addr ADDRESS`, then join workers with the "
            "command `docker swarm join-token worker` prints")


def remove_service(engine: DockerEngine, service: str) -> None:
    """Remove a service and its containers on this node: the engine (20.10) leaves a removed
    service's containers behind, running ones too. (Other nodes' are their engines' to end.)"""
    _quietly(engine.remove_service, service)
    label = f"{SERVICE_LABEL}={service}"
    with contextlib.suppress(Exception):
        for found in engine.containers({"label": label}):
            _quietly(engine.remove_container, found["Id"])


def remove_orphans(engine: DockerEngine, on_note: Callable[[str], None]) -> None:
    """Remove this node's containers of runyard's services that are gone. A service removed
    while its task was starting can have its container made after the removal looked
    for it; no one would ever end that container."""
    found = engine.containers({"label": [SERVICE_LABEL, PROJECT_LABEL]})  # before the services
    services = {service["ID"] for service in engine.services()}
    for container in found:
        labels = container.get("Labels") or {}
        if labels.get(SERVICE_LABEL) not in services:
            _quietly(engine.remove_container, container["Id"])
            name = (container.get("Names") or [container["Id"][:12]])[0].lstrip("/")
            on_note(f"removed container {name} of a removed service")


def reconcile_services(engine: DockerEngine, on_note: Callable[[str], None]) -> None:
    """Remove the services, secrets and configs of lost runners (labelled with their runner),
    and their runs' scratch volumes on this node; then the containers of removed services."""
    label = {"label": RUNNER_LABEL}
    for kind, listing in (("service", engine.services), ("secret", engine.secrets),
                          ("config", engine.configs), ("volume", engine.volumes)):
        for found in listing(label):
            spec = found.get("Spec") or found  # a volume has no spec: its own name and labels
            owner = Owner.parse((spec.get("Labels") or {}).get(RUNNER_LABEL, ""))
            if owner is None or not owner.is_lost():
                continue
            found_id = found.get("ID") or found["Name"]
            if kind == "service":
                remove_service(engine, found_id)
            else:
                _quietly(_removal(engine, kind), found_id)
            on_note(f"removed {kind} {spec.get('Name', found_id)} of lost runner {owner}")
    remove_orphans(engine, on_note)


class SwarmBackend:
    """A replicated-job service per run: not root, no capabilities, read-only root."""

    name = "swarm"

    def __init__(self, engine: DockerEngine, registry: str, *,
                 scratch_size: int = Limits().disk, pending_timeout: float = 60.0,
                 node_grace: float = 30.0, poll: float = 0.2) -> None:
        problem = swarm_problem(engine)
        if problem:
            raise RunyardError(problem)
        self.engine = engine
        self.registry = registry
        self.scratch_size = scratch_size  # each of a task's work and tmp (in memory)
        # A run not staged in a shared folder has its inputs and outputs on this node's disk.
        self.node_id: str = engine.call("GET", "/info")["Swarm"]["NodeID"]
        # How long a task may find no node for it (at most its own timeout): nodes may join.
        self.pending_timeout = pending_timeout
        # How long a run's node may be down before the run is given up: it may come back.
        self.node_grace = node_grace
        self.hostnames: dict[str, str] = {}
        self.poll = poll
        self.images: dict[tuple[str, str], str] = {}  # (environment image, code dir) -> pinned
        self.pushed: dict[str, str] = {}  # pinned -> its tag here
        self.placed: set[str] = set()  # the pinned images a task of this runner ran from
        self.image_lock = threading.Lock()
        self.running: set[str] = set()
        self.stopping = threading.Event()  # an interruption: every run ends, none starts
        self.lock = threading.Lock()
        # Removing a finished run's service and container takes a while; the next run need
        # not wait for it.
        self.removals = ThreadPoolExecutor(max_workers=2, thread_name_prefix="runyard-rm")

    def layout(self, launch: Launch) -> Layout:
        return SWARM_LAYOUT

    def run(self, launch: Launch, on_output: OnOutput, ready: Ready) -> Exit:
        ready()
        image = self.image_for(launch)
        made: list[tuple[str, str]] = []  # ("secret" | "config", id), removed at the end
        service = None
        try:
            spec = _config(self.engine, launch, made)
            secrets = _secrets(self.engine, launch, made)
            made += [("volume", f"{launch.name}-{part}") for part in SCRATCH_VOLUMES]
            service = self._create(launch.name, launch.labels, self._task_template(
                launch, self._run_container(launch, image, spec, secrets), launch.labels,
                container_env(launch, SWARM_LAYOUT)))
            with _Follow(self.engine, service, on_output) as follow:
                exit_ = self._wait(service, launch)
                if exit_.reason == "node":  # the rest of the log may be on a node that is gone
                    follow.patience = LOST_NODE_LOG_WAIT
            node = exit_.placed.node if exit_.placed else None
            if node is not None:
                with self.lock:
                    self.placed.add(image)
            return exit_._replace(placed=Placed(self._hostname(node), service, image))
        except EngineError as error:
            if error.status is None:  # no answer, or none in time
                raise RunyardError(f"lost the Docker engine during run {launch.uid}: "
                                   f"{error}") from error
            raise RunyardError(f"the swarm refused run {launch.uid}: {error}") from error
        except OSError as error:
            raise RunyardError(f"lost the Docker engine during run {launch.uid}: {error}") \
                from error
        finally:
            if service is not None:
                with self.lock:
                    self.running.discard(service)
            self.removals.submit(self._remove, service, made)

    def _remove(self, service: str | None, made: list[tuple[str, str]]) -> None:
        """Remove a run's service, its container on this node (the engine leaves it for a
        while), then its secrets, config and scratch volumes on this node (not before: the
        service holds them)."""
        if service is not None:
            remove_service(self.engine, service)
        for kind, made_id in made:
            _quietly(_removal(self.engine, kind), made_id)

    def _hostname(self, node: str | None) -> str | None:
        """A node's hostname, as `docker node ls` shows it (its id, if it has left)."""
        if node is None:
            return None
        if node not in self.hostnames:
            try:
                found = self.engine.inspect_node(node)
            except EngineError as error:
                if error.status is None:
                    raise
                found = None
            if found is None:
                return node
            self.hostnames[node] = found["Description"]["Hostname"]
        return self.hostnames[node]

    def stop_all(self) -> None:
        self.stopping.set()  # a service created from now on is removed by its own run
        with self.lock:
            services = list(self.running)
        for service in services:
            remove_service(self.engine, service)

    def close(self) -> None:
        """Wait for the removal of the finished runs' services, secrets and configs; then
        remove the run images no task ran from (no node took their runs): made for nothing."""
        self.removals.shutdown(wait=True)
        remove_orphans(self.engine, lambda line: None)
        registry = Registry(self.registry)
        for pinned in set(self.pushed) - self.placed:
            drop_run_image(self.engine, registry, self.pushed[pinned], pinned)

    # --- the image: environment + code + runtime -----------------------------------------

    def image_for(self, launch: Launch) -> str:
        """The run's image, `REGISTRY/NAME@sha256:...`: its environment image with the code
        snapshot and the runtime on top, built and pushed once per environment and tree."""
        if launch.image is None:
            raise RunyardError("the swarm backend runs images: the function has none")
        key = (launch.image, str(launch.code))
        with self.image_lock:
            if key not in self.images:
                self.images[key] = self._build_and_push(launch)
            return self.images[key]

    def _build_and_push(self, launch: Launch) -> str:
        assert launch.image is not None
        context = run_image_context(launch.image, launch.runtime, launch.code)
        tree = hashlib.sha256(context).hexdigest()[:12]
        name, _, env_hash = launch.image.rpartition(":")
        repository = f"{self.registry}/{name}"
        tag = f"{env_hash}-{tree}"
        if self.engine.inspect_image(f"{repository}:{tag}") is None:
            _stream(self.engine.build(context, {
                "t": f"{repository}:{tag}", "rm": "1", "forcerm": "1",
                "labels": json.dumps({LAYER_LABEL: tree})}, registry_config()),
                    f"building the run image {repository}:{tag}")
        try:
            pushed = _stream(self.engine.push(repository, tag, registry_auth(self.registry)),
                             f"the registry {self.registry} refused the image {repository}:{tag}")
        except RunyardError:
            _quietly(self.engine.remove_image, f"{repository}:{tag}")
            raise
        if pushed is None:
            raise RunyardError(f"pushing {repository}:{tag} gave no digest")
        self.pushed[f"{repository}@{pushed}"] = f"{repository}:{tag}"
        return f"{repository}@{pushed}"

    # --- the service ---------------------------------------------------------------------

    def _create(self, name: str, labels: Mapping[str, str], template: Json) -> str:
        """A replicated-job service of one task, counted as running (stop_all removes it)."""
        service = self.engine.create_service({
            "Name": name, "Labels": dict(labels), "TaskTemplate": template,
            "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}})
        with self.lock:
            self.running.add(service)
        return service

    def _run_container(self, launch: Launch, image: str, spec: Json,
                       secrets: list[Json]) -> dict[str, Json]:
        """A run's ContainerSpec: the runtime on its spec, inputs and outputs bound, work and
        tmp in memory."""
        inside, host = SWARM_LAYOUT, host_layout(launch)
        binds = [(host.inputs, inside.inputs, True), (host.outputs, inside.outputs, False)]
        return {
            "Image": image, "Command": ["python3", "-u", f"{inside.runtime}/entry.py", inside.spec],
            "Dir": inside.work,
            "Mounts": [*({"Target": target, "Source": source, "Type": "bind",
                          "ReadOnly": read_only} for source, target, read_only in binds),
                       *self._scratch(launch)],
            "Secrets": secrets, "Configs": [spec]}

    def _task_template(self, launch: Launch, container: Mapping[str, Json],
                       labels: Mapping[str, str], env: Mapping[str, str]) -> dict[str, Json]:
        """The service's TaskTemplate (Engine API 1.41): the container hardened (not root, no
        capabilities, a read-only root), with its labels and environment, and the run's
        limits, placement and network."""
        template: dict[str, Json] = {
            "ContainerSpec": {
                **container, "Env": [f"{name}={value}" for name, value in env.items()],
                # The service carries the runner's label; its containers go with it (and not
                # one by one, as reconcile_containers would remove a lost runner's).
                "Labels": {k: v for k, v in labels.items() if k != RUNNER_LABEL},
                "User": f"{NON_ROOT_ID}:{NON_ROOT_ID}", "ReadOnly": True,
                "CapabilityDrop": ["ALL"]},
            "Resources": _resources(launch.resources),
            "RestartPolicy": {"Condition": "none", "Delay": 0, "MaxAttempts": 0, "Window": 0},
            "Placement": {"Constraints": self.placement(launch)},
            "LogDriver": {"Name": "json-file",
                          "Options": {"max-size": LOG_FILE_LIMIT, "max-file": "1"}}}
        networks = self._networks(launch.network)
        if networks:  # a task without networks gets the node's default bridge
            template["Networks"] = [{"Target": network} for network in networks]
        return template

    def _scratch(self, launch: Launch) -> list[Json]:
        """The task's work and tmp: tmpfs volumes of the node it runs on, of the run's disk
        size each, owned by the task's user. (A tmpfs mount would do, but Swarm ignores its
        mode: root's, which the user could not write.)"""
        options = (f"size={self.scratch_size},uid={NON_ROOT_ID},gid={NON_ROOT_ID},mode=0700,"
                   "nosuid,nodev")
        targets = {"work": SWARM_LAYOUT.work, "tmp": SWARM_LAYOUT.tmp}
        return [{"Target": targets[part], "Source": f"{launch.name}-{part}", "Type": "volume",
                 "VolumeOptions": {"Labels": dict(launch.labels), "DriverConfig": {
                     "Name": "local",
                     "Options": {"type": "tmpfs", "device": "tmpfs", "o": options}}}}
                for part in SCRATCH_VOLUMES]

    def placement(self, launch: Launch) -> list[str]:
        """The run's constraints; on this node only unless its inputs and outputs are staged
        in a folder every node mounts (execution.shared)."""
        pinned = [] if launch.staged else [f"node.id=={self.node_id}"]
        return [*launch.placement, *pinned]

    def _networks(self, mode: str) -> list[str]:
        if mode == "bridge":
            return []
        if mode == "host":
            return ["host"]
        found = self.engine.networks({"name": [ISOLATED_NETWORK]})
        if found:
            return [found[0]["Id"]]
        with contextlib.suppress(Exception):  # another runner may make it meanwhile
            self.engine.create_network({"Name": ISOLATED_NETWORK, "Driver": "overlay",
                                        "Internal": True,
                                        "Labels": {"dev.runyard.network": "isolated"}})
        return [self.engine.networks({"name": [ISOLATED_NETWORK]})[0]["Id"]]

    def _wait(self, service: str, launch: Launch) -> Exit:
        """The task's end: its exit code, and why it ended early (timeout, oom, interrupted,
        its node drained or gone)."""
        timeout = launch.resources.timeout
        waiting_since = time.monotonic()
        started: float | None = None
        watch = NodeWatch(self.node_grace)
        while True:
            if self.stopping.is_set():
                return Exit(None, "interrupted")
            task = self._task(service)
            now = time.monotonic()
            if task.state in FINAL_STATES:
                return self._ended(task, launch)
            if task.state in WAITING_STATES:
                unplaced = self._unplaced(task, launch, now - waiting_since)
                if unplaced:
                    return Exit(None, "unplaced", unplaced)
            elif started is None:
                started = now
            if started is not None and timeout and now - started > timeout:
                # run() removes the service, once the log is read to this moment
                return Exit(None, "timeout", placed=Placed(task.node, service, ""))
            if task.node and task.state not in WAITING_STATES and watch.due(now):
                lost = watch.judge(task.node, self.engine.inspect_node(task.node), now)
                if lost:  # run() removes the service: retries are runyard's
                    return Exit(None, "node", f"{lost}: the run was stopped",
                                Placed(task.node, service, ""))
            time.sleep(self.poll)

    def _task(self, service: str) -> TaskState:
        """The state of the service's task: the first, the run (one the swarm makes after it,
        when its node left, is not)."""
        found = self.engine.tasks({"service": service})
        first = min(found, key=lambda t: t.get("CreatedAt", "")) if found else None
        return TaskState.of(first) if first else TaskState("new", None, None, None, None)

    def _unplaced(self, task: TaskState, launch: Launch, waited: float) -> str | None:
        """Why the task will not find a node, once that is sure; None while it may."""
        error = task.error or ""
        if "insufficient resources" in error:
            wanted = launch.resources
            if not any(_holds(node, wanted) for node in self.engine.nodes()):
                return (f"no node of the swarm has {wanted.cpu or 0} cpu, {wanted.memory or 0} "
                        f"bytes of memory and {wanted.gpus} gpus for the run ({error})")
            return None  # other runs hold them now
        limit = min(self.pending_timeout, launch.resources.timeout or self.pending_timeout)
        if waited > limit:
            why = f": {error}" if error else ""
            constraints = ", ".join(self.placement(launch)) or "none"
            return (f"no node of the swarm took the run in {limit:g} s{why} "
                    f"(placement: {constraints})")
        return None

    def _ended(self, task: TaskState, launch: Launch) -> Exit:
        placed = Placed(task.node, "", "")
        if task.state == "complete":  # some engines leave a zero exit code out
            return Exit(task.exit_code or 0, placed=placed)
        if task.state != "failed" or task.exit_code is None:  # it did not end by itself
            return self._taken(task, placed)
        return Exit(task.exit_code, "oom" if self._oom(task, launch) else None, placed=placed)

    def _taken(self, task: TaskState, placed: Placed) -> Exit:
        """The exit of a task the swarm ended (shut down, orphaned, rejected): reason `node`
        where its node was drained or left, `engine` otherwise."""
        said = task.error or "no reason given"
        done = {"shutdown": "shut down", "remove": "removed"}.get(task.state, task.state)
        if task.node is not None:
            trouble = node_trouble(task.node, self.engine.inspect_node(task.node))
            if trouble or task.state == "orphaned":  # orphaned: its node stayed unreachable
                why = trouble.why if trouble else (
                    f"the node {self._hostname(task.node)} the run was on is unreachable")
                return Exit(None, "node", f"{why}: the swarm {done} the run's task ({said})",
                            placed)
        return Exit(None, "engine", f"the swarm {done} the run's task: {said}", placed)

    def _oom(self, task: TaskState, launch: Launch) -> bool:
        """Whether the kernel killed the task for its memory: the container says so where it
        is on this node; elsewhere a SIGKILL under a memory limit is taken for one."""
        if task.container:
            found = self.engine.inspect_container(task.container)
            if found is not None:
                return bool(found["State"].get("OOMKilled"))
        return task.exit_code == 137 and bool(launch.resources.memory)


class SwarmWorkers:
    """Trial workers (runner/run/workers.py) as services of this swarm, pinned to this node:
    the runner mounts each trial's folders into its worker, which only this node's runner
    can. A worker is its service's one task; once it runs, its container is this node's."""

    name = "swarm"

    def __init__(self, swarm: SwarmBackend) -> None:
        self.swarm, self.engine = swarm, swarm.engine
        self.starting: dict[str, tuple[Launch, float]] = {}  # service -> its launch, created
        self.containers: dict[str, str] = {}  # service -> its task's container
        self.images: dict[str, str] = {}  # service -> the pinned run image
        self.lock = threading.Lock()

    def start(self, launch: Launch, worker: WorkerSpec) -> str:
        image = self.swarm.image_for(launch)
        container: dict[str, Json] = {"Image": image, "Command": worker.command, "Dir": "/",
                                       "Mounts": list(worker.mounts)}
        try:
            service = self.swarm._create(worker.name, worker.labels, self.swarm._task_template(
                launch, container, worker.labels, worker.env))
        except EngineError as error:
            raise RunyardError(f"the swarm refused trial worker {worker.name}: {error}") \
                from error
        with self.lock:
            self.starting[service] = (launch, time.monotonic())
            self.images[service] = image
        return service

    def check(self, service: str) -> bool:
        """While the worker starts: fail once its task ended, or will find no node; True
        while it waits for resources other tasks hold."""
        task = self.swarm._task(service)
        with self.lock:
            launch, created = self.starting[service]
        if task.state in FINAL_STATES:
            said = task.error or "no reason given"
            logs = b"".join(self.engine.service_logs(service, follow=False))[-2000:]
            raise RunyardError(f"trial worker {service} ended as it started ({task.state}: "
                               f"{said}): {logs.decode('utf-8', 'replace')}")
        if task.state not in WAITING_STATES:
            return False
        unplaced = self.swarm._unplaced(task, launch, time.monotonic() - created)
        if unplaced:
            raise Unplaced(unplaced)
        return "insufficient resources" in (task.error or "")

    def container(self, service: str) -> str:
        """The running worker's container (on this node: it is pinned here)."""
        for _ in range(50):
            task = self.swarm._task(service)
            if task.container:
                with self.lock:
                    self.containers[service] = task.container
                return task.container
            time.sleep(0.1)
        raise RunyardError(f"trial worker {service} runs, but the swarm names no container")

    def placed(self, service: str) -> Placed:
        """Where the worker runs: what each of its trials records."""
        node = self.swarm._task(service).node
        with self.lock:
            image = self.images[service]
        with self.swarm.lock:  # (an image a task ran from is kept by close)
            self.swarm.placed.add(image)
        return Placed(self.swarm._hostname(node), service, image)

    def kill(self, service: str) -> None:
        with self.lock:
            container = self.containers.get(service)
        if container is None:
            remove_service(self.engine, service)
        else:
            _quietly(self.engine.kill, container)

    def discard(self, service: str) -> None:
        with self.swarm.lock:
            self.swarm.running.discard(service)
        with self.lock:
            self.starting.pop(service, None)
            self.containers.pop(service, None)
        self.swarm.removals.submit(self.swarm._remove, service, [])

    def stop_all(self) -> None:
        self.swarm.stop_all()


class NodeTrouble(NamedTuple):
    """Why a node no longer runs a run's task, and whether that is final (drained, gone) or
    may pass (down: a node that lost its connection may come back)."""

    why: str
    final: bool


def node_trouble(node_id: str, node: Mapping[str, Any] | None) -> NodeTrouble | None:
    """What is wrong with the node a task is on (`node`: the engine's GET /nodes/{id}, None
    once it left the swarm); None while it is ready and active (or paused: a paused node
    keeps its tasks)."""
    if node is None:
        return NodeTrouble(f"the node {node_id} the run was on left the swarm", True)
    host = (node.get("Description") or {}).get("Hostname") or node_id
    if (node.get("Spec") or {}).get("Availability") == "drain":
        return NodeTrouble(f"the node {host} the run was on was drained (availability: drain)",
                           True)
    status = node.get("Status") or {}
    state = status.get("State", "unknown")
    if state != "ready":
        said = f": {status['Message']}" if status.get("Message") else ""
        return NodeTrouble(f"the node {host} the run was on is {state}{said}", False)
    return None


class NodeWatch:
    """Whether a running task's node still runs it. Swarm (20.10) does not end a job's task
    on a drained node, and keeps a task `running` while its node is down, for hours: the
    runner looks at the node itself, and gives a node that is down `grace` seconds to
    come back."""

    def __init__(self, grace: float, every: float = NODE_CHECK_EVERY) -> None:
        self.grace, self.every = grace, every
        self.checked: float | None = None
        self.down_since: float | None = None

    def due(self, now: float) -> bool:
        """Whether it is time to look at the node again."""
        return self.checked is None or now - self.checked >= self.every

    def judge(self, node_id: str, node: Mapping[str, Any] | None, now: float) -> str | None:
        """Why the run is lost with its node (what node_trouble says, once final or down
        for the grace period), or None."""
        self.checked = now
        trouble = node_trouble(node_id, node)
        if trouble is None:
            self.down_since = None
            return None
        if trouble.final:
            return trouble.why
        if self.down_since is None:
            self.down_since = now
        if now - self.down_since < self.grace:
            return None
        return f"{trouble.why} (for {self.grace:g} s)"


class _Follow:
    """Pass on a service's log as it comes; on leaving, what the stream had not yet
    passed on (a service's log stream runs on after its task ends), waited for `patience`
    seconds of silence at most: the manager asks the task's node for it, and waits a
    minute for a node that is gone."""

    def __init__(self, engine: DockerEngine, service: str, on_output: OnOutput) -> None:
        self.engine, self.service, self.on_output = engine, service, on_output
        self.passed = 0
        self.closed = False
        self.patience = CALL_TIMEOUT
        self.lock = threading.Lock()

    def __enter__(self) -> _Follow:
        threading.Thread(target=self._follow, daemon=True, name="runyard-swarm-log").start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            whole = b"".join(self.engine.service_logs(self.service, follow=False,
                                                      timeout=self.patience))
        except EngineTimeout:
            whole = None
            self.on_output(b"runyard: the rest of the run's output could not be read: its node "
                           b"did not answer\n")
        except Exception:  # the service may be gone: nothing more to read
            whole = None
        with self.lock:
            self.closed = True
            rest = whole[self.passed:] if whole else b""
        if rest:
            self.on_output(rest)

    def _follow(self) -> None:
        with contextlib.suppress(Exception):  # ends with the service
            for chunk in self.engine.service_logs(self.service, follow=True):
                with self.lock:
                    if self.closed:
                        return
                    self.passed += len(chunk)
                    self.on_output(chunk)


def _holds(node: Mapping[str, Any], wanted: Resources) -> bool:
    """Whether a ready node has, in all, the cpu, memory and gpus a run reserves."""
    if (node.get("Status") or {}).get("State") != "ready":
        return False
    has = (node.get("Description") or {}).get("Resources") or {}
    gpus = sum(spec.get("DiscreteResourceSpec", {}).get("Value", 0)
               + (1 if spec.get("NamedResourceSpec") else 0)
               for spec in has.get("GenericResources") or ()
               if (spec.get("DiscreteResourceSpec") or spec.get("NamedResourceSpec") or {})
               .get("Kind") == "gpu")
    return bool((wanted.cpu or 0) * 1e9 <= has.get("NanoCPUs", 0)
                and (wanted.memory or 0) <= has.get("MemoryBytes", 0) and wanted.gpus <= gpus)


def _resources(resources: Resources) -> dict[str, Json]:
    """A task's limits and reservations: the cpu and memory it asks for, its gpus."""
    limits: dict[str, Json] = {}
    reservations: dict[str, Json] = {}
    if resources.cpu:
        limits["NanoCPUs"] = reservations["NanoCPUs"] = int(resources.cpu * 1e9)
    if resources.memory is not None:
        limits["MemoryBytes"] = reservations["MemoryBytes"] = resources.memory
    if resources.gpus:
        reservations["GenericResources"] = [
            {"DiscreteResourceSpec": {"Kind": "gpu", "Value": resources.gpus}}]
    limits["Pids"] = PIDS_LIMIT
    return {"Limits": limits, **({"Reservations": reservations} if reservations else {})}


def _config(engine: DockerEngine, launch: Launch, made: list[tuple[str, str]]) -> Json:
    """The run's spec as a Swarm config, read-only at the layout's spec path."""
    name = f"{launch.name}-spec"
    found = engine.create_config(name, (launch.run_dir / "spec.json").read_bytes(),
                                 dict(launch.labels))
    made.append(("config", found))
    return {"ConfigID": found, "ConfigName": name, "File": _file(SWARM_LAYOUT.spec, 0o444)}


def _secrets(engine: DockerEngine, launch: Launch, made: list[tuple[str, str]]) -> list[Json]:
    """The run's secrets as Swarm secrets: files only the task's user reads, never in its
    environment nor in the service's spec (which names them only)."""
    references = []
    for path in sorted((launch.run_dir / "secrets").iterdir()):
        name = f"{launch.name}-{path.name}"
        found = engine.create_secret(name, path.read_bytes(), dict(launch.labels))
        made.append(("secret", found))
        references.append({"SecretID": found, "SecretName": name,
                           "File": _file(path.name, 0o400)})
    return references


def _file(name: str, mode: int) -> dict[str, Json]:
    """Where a secret or config is mounted in the task, owned by the task's user."""
    return {"Name": name, "UID": str(NON_ROOT_ID), "GID": str(NON_ROOT_ID), "Mode": mode}


def run_image_context(base: str, runtime: Path, code: Path) -> bytes:
    """The build context of a run image, the same bytes for the same files (so its hash
    names the tree): a Dockerfile, the runtime and the code, all owned by root."""
    dockerfile = (f"FROM {base}\nCOPY runtime /runyard/runtime\nCOPY code /runyard/code\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add_bytes(tar, "Dockerfile", dockerfile.encode())
        for prefix, root in (("runtime", runtime), ("code", code)):
            for path in _files(root):
                if "__pycache__" in path.parts:
                    continue
                relative = path.relative_to(root).as_posix()
                info = tar.gettarinfo(str(path), f"{prefix}/{relative}")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                info.mode = 0o755 if info.isdir() else (0o755 if info.mode & 0o100 else 0o644)
                if info.isfile():
                    with path.open("rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
    return buffer.getvalue()


def _files(root: Path) -> Iterator[Path]:
    yield from sorted(root.rglob("*"))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _stream(lines: Iterator[dict[str, Json]], what: str) -> str | None:
    """Read a build's or a push's progress to its end; the pushed digest, if any."""
    digest = None
    for line in lines:
        if "error" in line:
            detail = (line.get("errorDetail") or {}).get("message") or line["error"]
            raise RunyardError(f"{what}: {str(detail).strip()}")
        digest = (line.get("aux") or {}).get("Digest") or digest
    return digest


def _quietly(action: Callable[[str], None], name: str) -> None:
    """Remove what may be gone already (or be going)."""
    with contextlib.suppress(*Unreachable):
        action(name)


def _removal(engine: DockerEngine, kind: str) -> Callable[[str], None]:
    """How to remove a secret, a config or a volume (`kind`)."""
    return {"secret": engine.remove_secret, "config": engine.remove_config,
            "volume": engine.remove_volume}[kind]

