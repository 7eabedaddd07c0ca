"""What a run may touch beyond its container: the operator's word, never the repository's.

A push runs for everyone who can push, so what widens a run's reach (secrets,
host networking, host files and private addresses as inputs, base images,
build and output limits) comes from the runner's configuration: the `runyard.*`
keys of the repository's git config (`runyard hook install --allow-...` writes
them; a push cannot change them). Runs started by a push or a schedule get the
strict defaults below, widened only by that configuration; a person running
`runyard run` in their own checkout is the operator, and gets `personal()`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import ipaddress
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from runner.errors import Problem, RunyardError
from runner.frozen import frozen
from runner.git import read_config
from runner.project import refs, units
from runner.project.model import Function, GiB, Job, Limits, Project
from runner.project.yamlread import Document

RUNYARD_IMAGES = "runyard/*"
DEFAULT_MAX_RUNS = 16  # a push's runs at once: hyper.parallel and pipelines multiply
_HEX_ID = re.compile(r"(sha256:)?[0-9a-f]{12,64}")
_DEFAULT_REGISTRY = re.compile(r"^((docker\.io|index\.docker\.io|registry-1\.docker\.io)/)?(library/)?")


@frozen
class Policy:
    """What this runner's operator allows the runs it starts."""

    secrets: frozenset[str] | None = frozenset()  # None: every secret the project names
    host_network: bool = False
    file_inputs: tuple[str, ...] = ()  # host folders `file://` inputs may come from
    private_urls: bool = False  # URL inputs may reach loopback, link-local, private addresses
    # runs on a bridge may reach this host and its private networks (else: runner.run.network)
    private_network: bool = False
    base_images: tuple[str, ...] = ()  # patterns of allowed base images; none: any runyard did not build
    local_backend: bool = False  # runs on the host itself, outside any container
    artifact_store: str | None = None  # the operator's store; else the project's, if inside it
    registry: str | None = None  # the one registry runs on the swarm backend may push code to
    shared: str | None = None  # the one folder the swarm backend may stage runs in (every node's)
    own_checkout: bool = False  # a person's own runs: any store, any base image
    build_timeout: float = 1800.0
    build_memory: int = 4 * GiB
    limits: Limits = field(default_factory=Limits)
    # runs at once (each with a scratch of up to limits.disk), whatever `parallel` asks; None: any
    max_runs: int | None = DEFAULT_MAX_RUNS

    @classmethod
    def personal(cls) -> Policy:
        """A person's own run in their own checkout: they are the operator."""
        return cls(secrets=None, host_network=True, file_inputs=("/",), private_urls=True,
                   private_network=True,
                   local_backend=True, own_checkout=True, build_timeout=3600.0, max_runs=None)

    def store_for(self, project: Project) -> str:
        """Where the project's artifacts go: the operator's store, or the project's own if it
        is a folder inside the project (an outside path or a URL is the operator's to give)."""
        if self.artifact_store is not None:
            return self.artifact_store
        if self.own_checkout or _inside(project.artifact_store):
            return project.artifact_store
        raise RunyardError(f"{project.file}: artifact store {project.artifact_store!r} is outside "
                           "the project; runs started by a push use it only where the runner's "
                           "operator names a store (--artifact-store)")

    def describe(self) -> str:
        """One line for a person: what this policy lets runs have."""
        secrets = "any the project names" if self.secrets is None else \
            (", ".join(sorted(self.secrets)) or "none")
        files = ", ".join(self.file_inputs) or "none"
        images = ", ".join(self.base_images) or "any but images runyard built"
        return (f"secrets: {secrets}; host network: {_yes(self.host_network)}; host files from: "
                f"{files}; private URLs: {_yes(self.private_urls)}; runs reach this host and "
                f"private networks: {_yes(self.private_network)}; base images: {images}; "
                f"local backend: {_yes(self.local_backend)}; swarm registry: "
                f"{self.registry or 'none'}; swarm shared folder: {self.shared or 'none'}; builds: "
                f"{units.format_duration(self.build_timeout)}, "
                f"{units.format_bytes(self.build_memory)}; per run: results "
                f"{units.format_bytes(self.limits.results)}, artifact "
                f"{units.format_bytes(self.limits.artifact)}, disk "
                f"{units.format_bytes(self.limits.disk)}; runs at once: "
                f"{self.max_runs or 'any number'}")

    def registry_refusal(self, registry: str | None) -> str | None:
        """Why the swarm backend may not push code to `registry` (the project's), or None:
        for runs a push starts, only the registry the operator names."""
        if self.own_checkout or (registry is not None and registry == self.registry):
            return None
        return ("the swarm backend pushes each revision's code to a registry: runs started by "
                "a push use only the one the runner's operator names (--registry); the project "
                f"names {registry or 'none'}, the operator {self.registry or 'none'}")

    def shared_refusal(self, shared: str | None) -> str | None:
        """Why the swarm backend may not stage runs in `shared` (the project's folder every
        node mounts), or None: the runner writes there as itself, so for runs a push starts,
        only in the folder the operator names."""
        if shared is None or self.own_checkout or \
                (self.shared is not None and Path(shared) == Path(self.shared)):
            return None
        return ("the swarm backend stages runs in the shared folder, as the runner: runs started "
                "by a push use only the one the runner's operator names (--shared); the project "
                f"names {shared}, the operator {self.shared or 'none'}")

    def allows_secret(self, name: str) -> bool:
        return self.secrets is None or name in self.secrets

    def allows_file(self, path: Path) -> bool:
        """`path` (resolved, no links left) lies in one of the allowed folders."""
        return any(path.is_relative_to(Path(folder).resolve()) for folder in self.file_inputs)

    def allows_address(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.partition("%")[0])  # fe80::1%eth0: its zone aside
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return self.private_urls or ip.is_global

    def base_image_refusal(self, image: str, built_by: str | None = None) -> str | None:
        """Why `image` may not be a base image here, or None. `built_by` is the runyard
        project whose build the engine says the image is (its label), if any: runs started
        by a push never build on what runyard built, whatever name it goes by."""
        name = _normal_image(image)
        if self.base_images:
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.base_images):
                return None
            return f"not one of the base images this runner allows ({', '.join(self.base_images)})"
        if self.own_checkout:
            return None
        if _HEX_ID.fullmatch(name):
            return "an image id hides what it is: name the image"
        if built_by is not None or fnmatch.fnmatchcase(name, RUNYARD_IMAGES):
            owner = f" (of project {built_by!r})" if built_by else ""
            return f"an image runyard built{owner}: build on the image it was built from"
        return None


def registry_host(image: str) -> str | None:
    """The host of the registry an image reference names, as Docker reads one: the part
    before its first `/` when that holds a `.` or a `:` or is `localhost` (None: Docker Hub)."""
    first, slash, _ = image.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        return None
    if first.startswith("["):  # [::1]:5000
        return first[1:].partition("]")[0]
    return first.rpartition(":")[0] if first.count(":") == 1 else first


GIT_KEYS = {
    "allowsecret": "secrets", "allowhostnetwork": "host_network", "allowfiles": "file_inputs",
    "allowprivateurls": "private_urls", "allowprivatenetwork": "private_network",
    "allowimage": "base_images",
    "allowlocalbackend": "local_backend", "buildtimeout": "build_timeout",
    "buildmemory": "build_memory", "maxresults": "results", "maxartifact": "artifact",
    "maxdisk": "disk", "maxlog": "log", "artifactstore": "artifact_store",
    "registry": "registry", "shared": "shared", "maxruns": "max_runs",
}


def read_policy(git_dir: Path) -> Policy:
    """The strict defaults, widened by the repository's `runyard.*` git config."""
    values: dict[str, list[str]] = {}
    for key, value in read_config(git_dir, r"^runyard\."):
        values.setdefault(key.removeprefix("runyard.").lower(), []).append(value)
    return policy_from(values, f"the git config of {git_dir}")


def operator_policy(git_dir: Path, backend: str | None) -> Policy:
    """The policy of runs the runner starts: the git config's, and `--backend local` given by
    the operator on the command line allows the local backend."""
    policy = read_policy(git_dir)
    return dataclasses.replace(policy, local_backend=True) if backend == "local" else policy


def policy_from(values: Mapping[str, list[str]], where: str) -> Policy:
    """A policy from `runyard.*` settings (lower-case names without the prefix)."""
    unknown = sorted(set(values) - set(GIT_KEYS))
    if unknown:
        raise RunyardError(f"{where}: unknown setting runyard.{unknown[0]} "
                           f"(known: {', '.join(sorted(GIT_KEYS))})")
    fields: dict[str, Any] = {}
    limits: dict[str, int] = {}
    for key, found in values.items():
        name = GIT_KEYS[key]
        try:
            if name in ("results", "artifact", "disk", "log"):
                limits[name] = units.parse_memory(found[-1], what="value")
            else:
                fields[name] = _PARSERS[name](found)
        except ValueError as error:
            raise RunyardError(f"{where}: runyard.{key}: {error}") from error
    return Policy(**fields, limits=Limits(**limits))


_PARSERS: dict[str, Callable[[list[str]], Any]] = {
    "secrets": frozenset,
    "file_inputs": tuple,
    "artifact_store": lambda found: found[-1],
    "registry": lambda found: found[-1],
    "shared": lambda found: _shared_path(found[-1]),
    "base_images": tuple,
    "build_timeout": lambda found: units.parse_duration(found[-1]),
    "build_memory": lambda found: units.parse_memory(found[-1], what="value"),
    "host_network": lambda found: _boolean(found[-1]),
    "private_urls": lambda found: _boolean(found[-1]),
    "private_network": lambda found: _boolean(found[-1]),
    "local_backend": lambda found: _boolean(found[-1]),
    "max_runs": lambda found: _count(found[-1]),
}


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _shared_path(path: str) -> str:
    problem = refs.shared_path_problem(path)
    if problem:
        raise ValueError(problem)
    return path


def _yes(value: bool) -> str:
    return "allowed" if value else "refused"


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def push_warnings(project: Project, policy: Policy) -> list[Problem]:
    """What the runner on push would refuse or withhold under `policy`, at file:line:
    `runyard validate` shows these against the strict defaults, so a pusher learns
    before pushing."""
    return sorted({*_secret_refusals(project, policy), *refusals(project, policy)})


def refusals(project: Project, policy: Policy, jobs: Iterable[str] | None = None) -> list[Problem]:
    """What of the project (or of the named jobs) this policy refuses to run, at file:line.
    (A secret it does not allow is not refused: it is withheld.)"""
    chosen = [project.jobs[name] for name in jobs] if jobs is not None else list(project.jobs.values())
    functions = {name for job in chosen for name in _functions_of(project, job)} \
        if jobs is not None else set(project.functions)
    found = _backend_refusals(project, policy, chosen)
    try:
        policy.store_for(project)
    except RunyardError as error:
        found += _problem(project.doc, ("artifacts", "store"), error.message.partition(": ")[2])
    for name in sorted(functions):
        found += _function_refusals(project, project.functions[name], policy)
    for job in chosen:
        found += _input_refusals(job.doc, ("inputs",), job.inputs, policy)
        pipeline = project.pipelines.get(job.run.pipeline or "")
        for step in pipeline.steps if pipeline else ():
            found += _input_refusals(pipeline.doc if pipeline else None,
                                     ("steps", step.index, "inputs"), step.inputs, policy)
    return sorted(set(found))


def _inside(location: str) -> bool:
    """A folder in runyard's own corner of the project (`.runyard/`), which in a bare
    repository is not among git's own files."""
    parts = Path(location).parts
    return "://" not in location and not os.path.isabs(location) and ".." not in parts \
        and len(parts) > 1 and parts[0] == ".runyard"


def _normal_image(image: str) -> str:
    """`image` as the engine names it locally: no default registry, no `library/`."""
    return _DEFAULT_REGISTRY.sub("", image, count=1)


def _functions_of(project: Project, job: Job) -> list[str]:
    if job.run.function:
        return [job.run.function]
    pipeline = project.pipelines.get(job.run.pipeline or "")
    return [step.function for step in pipeline.steps] if pipeline else []


def _problem(doc: Document | None, path: tuple[str | int, ...], message: str) -> list[Problem]:
    return [doc.problem(path, message)] if doc is not None else []


def _secret_refusals(project: Project, policy: Policy) -> list[Problem]:
    return [problem for index, name in enumerate(project.secrets) if not policy.allows_secret(name)
            for problem in _problem(project.doc, ("secrets", index),
                                    f"secret {name} is withheld from runs started by a push unless "
                                    f"the runner's operator allows it (--allow-secret {name})")]


def _backend_refusals(project: Project, policy: Policy, jobs: list[Job]) -> list[Problem]:
    found = _registry_refusals(project, policy, jobs)
    if policy.local_backend:
        return found
    if project.backend == "local":
        found += _problem(project.doc, ("execution", "backend"), _LOCAL)
    for job in jobs:
        if job.backend == "local":
            found += _problem(job.doc, ("backend",), _LOCAL)
    return found


def _registry_refusals(project: Project, policy: Policy, jobs: list[Job]) -> list[Problem]:
    """The swarm backend pushes the code to the registry the project names, and the runner's
    engine talks to it: for runs a push starts, only the registry the operator names."""
    on_swarm = project.backend == "swarm" or any(job.backend == "swarm" for job in jobs)
    if not on_swarm:
        return []
    found = []
    refusal = policy.registry_refusal(project.registry)
    if refusal is not None:
        found += _problem(project.doc,
                          ("execution", "registry") if project.registry else ("execution",), refusal)
    refusal = policy.shared_refusal(project.shared)
    if refusal is not None:
        found += _problem(project.doc, ("execution", "shared"), refusal)
    return found


_LOCAL = ("the local backend runs code on the runner's host, outside any container: runs started "
          "by a push use it only where the runner's operator allows it")


def _function_refusals(project: Project, function: Function, policy: Policy) -> list[Problem]:
    found = []
    if function.network == "host" and not policy.host_network:
        found += _problem(function.doc, ("network",), "the host's network reaches the runner's own "
                          "services: runs started by a push get it only where the operator allows it")
    base = function.environment.base_image or project.base_image
    why = policy.base_image_refusal(base)
    if why is not None:
        if function.environment.base_image:
            found += _problem(function.doc, ("environment", "base_image"), f"base image {base}: {why}")
        else:
            found += _problem(project.doc, ("defaults", "base_image"), f"base image {base}: {why}")
    return found


def _input_refusals(doc: Document | None, path: tuple[str | int, ...], inputs: Mapping[str, str],
                    policy: Policy) -> list[Problem]:
    found = []
    for name, uri in inputs.items():
        why = input_refusal(uri, policy)
        if why is not None:
            found += _problem(doc, (*path, name), f"input {name}: {why}")
    return found


def input_refusal(uri: str, policy: Policy) -> str | None:
    """Why `uri` will be refused, where that can be told without fetching it."""
    if uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
        if path.is_absolute() and not policy.allows_file(Path(os.path.normpath(path))):
            return ("a file of the runner's host: read only from folders the runner's operator "
                    "allows (--allow-files DIR)")
        return None
    host = urllib.parse.urlsplit(uri).hostname if uri.startswith(("http://", "https://")) else None
    if host is None or policy.private_urls:
        return None
    try:
        literal = host == "localhost" or host.endswith(".localhost") or not policy.allows_address(host)
    except ValueError:  # a name: it is checked when it is resolved, at fetch time
        return None
    return ("a loopback, link-local or private address: fetched only where the runner's operator "
            "allows it (--allow-private-urls)") if literal else None
