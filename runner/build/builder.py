"""Build one image per distinct function environment, only when it is missing."""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from runner.build.engine import DockerEngine, EngineError, Unreachable, connect, registry_config
from runner.errors import RunyardError
from runner.frozen import frozen
from runner.project import refs
from runner.project.environment import (
    LABEL_ENV_HASH,
    LABEL_FUNCTIONS,
    LABEL_PROJECT,
    ImageSpec,
    base_image,
    dockerfile_template,
    image_spec,
)
from runner.project.model import Project
from runner.project.policy import Policy, registry_host
from runner.project.source import ProjectSource
from runner.project.yamlread import Path as DocPath

OnLine = Callable[[str, str], None]
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LOG_TAIL_LINES = 15
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
# The engine wraps a step's stderr in colour codes: keep them out of logs and messages.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@frozen
class ImageNeed:
    """An image and the functions that run in it."""

    spec: ImageSpec
    functions: tuple[str, ...]


class BuildOutcome(NamedTuple):
    need: ImageNeed
    action: str  # "reused", "built" or "failed"
    seconds: float = 0.0
    error: str | None = None
    log: Path | None = None


class LocalImages(NamedTuple):
    """What the engine holds, from one round trip: image ids by tag."""

    ids: dict[str, str]

    @classmethod
    def read(cls, engine: DockerEngine) -> LocalImages:
        ids: dict[str, str] = {}
        for image in engine.images():
            for tag in image.get("RepoTags") or ():
                ids[tag] = image["Id"]
        return cls(ids)

    @classmethod
    def of(cls, engine: DockerEngine, names: Iterable[str]) -> LocalImages:
        """What the engine holds of the images `names` (as users write them), a round trip
        each: an engine of many images takes longer to list them all."""
        ids: dict[str, str] = {}
        for name in dict.fromkeys(names):
            found = engine.inspect_image(name) or {}
            for tag in found.get("RepoTags") or ():
                ids[tag] = found["Id"]
        return cls(ids)


def needs_and_images(engine: DockerEngine, project: Project, source: ProjectSource,
                     only: Sequence[str] = ()) -> tuple[list[ImageNeed], LocalImages]:
    """The images the project's functions (or the named ones) need, and what the engine
    holds of them: their base images, then their own tags, asked for one by one."""
    functions = [f for name, f in project.functions.items() if not only or name in only]
    bases = LocalImages.of(engine, sorted({base_image(project, f) for f in functions}))
    needs = image_needs(project, source, bases, only)
    tags = LocalImages.of(engine, [need.spec.tag for need in needs])
    return needs, LocalImages({**bases.ids, **tags.ids})


def image_needs(project: Project, source: ProjectSource, local: LocalImages,
                only: Sequence[str] = ()) -> list[ImageNeed]:
    """The images the project's functions (or the named ones) need, shared where equal."""
    unknown = [name for name in only if name not in project.functions]
    if unknown:
        known = ", ".join(sorted(project.functions))
        raise RunyardError(f"no function named {', '.join(unknown)} (known: {known})")
    by_hash: dict[str, tuple[ImageSpec, list[str]]] = {}
    for name, function in sorted(project.functions.items()):
        if only and name not in only:
            continue
        spec = image_spec(project, function, source, ids_by_name(local.ids))
        by_hash.setdefault(spec.env_hash, (spec, []))[1].append(name)
    return [ImageNeed(spec, tuple(names)) for spec, names in by_hash.values()]


def build_images(engine: DockerEngine, project: Project, needs: Iterable[ImageNeed],
                 local: LocalImages, log_dir: Path, on_line: OnLine,
                 force: bool = False, policy: Policy | None = None,
                 network: str | None = None) -> list[BuildOutcome]:
    """Build what is missing (everything with `force`); a failure does not stop the others.

    `policy` is the operator's: which base images are allowed, and the build's limits.
    The build's steps join `network` (None: the engine's default bridge).
    """
    policy = policy or Policy()
    outcomes = []
    for need in needs:
        refusal = _base_refusal(engine, project, need, policy)
        if refusal is not None:
            outcomes.append(BuildOutcome(need, "failed", error=refusal))
        elif need.spec.tag in local.ids and not force:
            outcomes.append(BuildOutcome(need, "reused"))
        else:
            outcomes.append(_build(engine, project, need, log_dir, on_line, force, policy, network))
    return outcomes


def _base_refusal(engine: DockerEngine, project: Project, need: ImageNeed,
                  policy: Policy) -> str | None:
    """Why the need's base image may not be built on here, at the file and line that names it."""
    base = need.spec.environment.base_image
    # what the engine takes the name for, whatever it is spelled like; a missing image
    # is for the build to report, at its FROM
    found = engine.inspect_image(base) or {}
    labels = (found.get("Config") or {}).get("Labels") or {}
    why = policy.base_image_refusal(base, labels.get(LABEL_PROJECT)) or \
        (None if found or policy.base_images or policy.own_checkout else _registry_refusal(base, policy))
    if why is None:
        return None
    return f"{_where(project, need, ('environment', 'base_image'))}: base image {base!r} is refused: {why}"


def _registry_refusal(base: str, policy: Policy) -> str | None:
    """Why the engine may not pull `base` for a push: its registry is at an address of the
    runner's own or private network (the engine, on the host, would connect there for the
    push: any port of its loopback, another project's run images in a local registry).
    An operator allows such a registry with --allow-image (or --allow-private-urls)."""
    host = registry_host(base)
    if host is None:
        return None
    try:  # as the engine resolves it: 127.1, 2130706433 and names of loopback too
        found = {str(info[4][0]) for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError):
        return None  # the engine cannot reach it either: the build says so
    private = sorted(address for address in found if not policy.allows_address(address))
    if not private:
        return None
    return (f"its registry {host} is at {', '.join(private)}, an address of this runner's own or "
            "private network, which runs a push starts never reach (the operator may allow a "
            "registry with --allow-image)")


def render_dockerfile(spec: ImageSpec, *, ca_bundle: bool, buildkit: bool = False) -> str:
    """The Dockerfile of an image; RunyardError, before anything is written, for a value
    the checks refuse (they ran, but a Dockerfile is no place to trust that they did)."""
    import jinja2  # only when an image is built: a no-op build never needs it

    env = spec.environment
    problems = [problem for problem in _dockerfile_problems(spec) if problem is not None]
    if problems:
        raise RunyardError(f"refusing to write the Dockerfile of {spec.tag}: {'; '.join(problems)}")
    template = jinja2.Environment(trim_blocks=True, lstrip_blocks=True,
                                  undefined=jinja2.StrictUndefined)
    return template.from_string(dockerfile_template()).render(
        env_hash=spec.env_hash,
        base_image=env.base_image,
        system_packages=sorted(env.system_packages),
        requirements=spec.requirements,
        setup=env.setup,
        env=dict(sorted(env.env.items())),
        ca_bundle=ca_bundle,
        buildkit=buildkit,
    )


def _dockerfile_problems(spec: ImageSpec) -> Iterator[str | None]:
    env = spec.environment
    yield refs.image_problem(env.base_image)
    yield from map(refs.package_problem, env.system_packages)
    yield from map(refs.requirement_problem, spec.requirements)
    for name, value in env.env.items():
        yield refs.env_name_problem(name)
        yield refs.env_value_problem(value)


def _build(engine: DockerEngine, project: Project, need: ImageNeed, log_dir: Path,
           on_line: OnLine, force: bool, policy: Policy, network: str | None) -> BuildOutcome:
    spec = need.spec
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{spec.env_hash[:12]}.log"
    ca_bundle = HOST_CA_BUNDLE.is_file()
    dockerfile = render_dockerfile(spec, ca_bundle=ca_bundle)
    started = time.monotonic()
    step, error = "", None
    watch = _Deadline(engine, policy.build_timeout)
    with log_path.open("w", encoding="utf-8") as log, watch:
        log.write(dockerfile + "\n")
        try:
            labels = {LABEL_PROJECT: project.name, LABEL_ENV_HASH: spec.env_hash,
                      LABEL_FUNCTIONS: ",".join(need.functions)}
            stream = engine.build(_context(dockerfile, spec, ca_bundle), {
                "t": spec.tag, "rm": "1", "forcerm": "1", "nocache": "1" if force else "0",
                "memory": str(policy.build_memory), "memswap": str(policy.build_memory),
                "labels": json.dumps(labels), **({"networkmode": network} if network else {})},
                registry_config())
            for chunk in stream:
                step, error = _consume(chunk, step, error, log, lambda line: on_line(spec.tag, line))
                watch.follow(chunk)
        except EngineError as api_error:
            error = api_error.message
            log.write(error + "\n")
    if watch.expired.is_set():
        error = f"the build took longer than its limit of {policy.build_timeout:.0f} s"
        with log_path.open("a", encoding="utf-8") as log:
            log.write(error + "\n")
    seconds = time.monotonic() - started
    if error is None:
        return BuildOutcome(need, "built", seconds, log=log_path)
    message = _failure(project, need, step, error, log_path)
    return BuildOutcome(need, "failed", seconds, message, log_path)


class _Deadline:
    """Ends a build at its time limit: the step's container is killed, so the step fails
    and the engine ends the build (and removes the container)."""

    _RUNNING = re.compile(r"^ ---> Running in ([0-9a-f]{12,64})$")

    def __init__(self, engine: DockerEngine, seconds: float) -> None:
        self.engine = engine
        self.expired = threading.Event()
        self.container: str | None = None
        self.lock = threading.Lock()
        self.timer = threading.Timer(seconds, self._expire)
        self.timer.daemon = True

    def __enter__(self) -> _Deadline:
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()

    def follow(self, chunk: dict[str, Any]) -> None:
        match = self._RUNNING.match(str(chunk.get("stream") or "").rstrip("\n"))
        if match:
            with self.lock:
                self.container = match[1]
            if self.expired.is_set():
                self._kill()

    def _expire(self) -> None:
        self.expired.set()
        self._kill()

    def _kill(self) -> None:
        with self.lock:
            container = self.container
        if container is not None:
            with contextlib.suppress(*Unreachable):  # ended already
                self.engine.kill(container)


def _consume(chunk: dict[str, Any], step: str, error: str | None, log: io.TextIOBase,
             emit: Callable[[str], None]) -> tuple[str, str | None]:
    text = _ANSI.sub("", chunk.get("stream") or chunk.get("status") or "")
    if "error" in chunk:
        error = str(chunk.get("errorDetail", {}).get("message") or chunk["error"]).strip()
        text = error + "\n"
    for line in text.splitlines():
        log.write(line + "\n")
        if _STEP.match(line):
            step = line
        if line.strip():
            emit(line)
    return step, error


def _context(dockerfile: str, spec: ImageSpec, ca_bundle: bool) -> bytes:
    files = {"Dockerfile": dockerfile.encode(),
             "requirements.txt": "".join(f"{r}\n" for r in spec.requirements).encode()}
    if ca_bundle:
        files["ca.crt"] = HOST_CA_BUNDLE.read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _failure(project: Project, need: ImageNeed, step: str, error: str, log_path: Path) -> str:
    where = _where(project, need, _step_origin(step, need.spec))
    path = _step_origin(step, need.spec)
    match = _STEP.match(step)
    failing = f"at step {match[1]}/{match[2]} ({match[3]})" if match else "before the first step"
    lines = log_path.read_text("utf-8", "replace").splitlines()[-LOG_TAIL_LINES:]
    tail = "\n".join(f"    {line}" for line in lines)
    names = ", ".join(need.functions)
    if path == ("environment", "base_image") and need.spec.base_image_id is None:
        base = need.spec.environment.base_image
        error = (f"base image {base} is not on this machine and cannot be pulled ({error}); "
                 f"bring it with `docker load`, or run `runyard setup`")
    return (f"{where}: the image of function {names} failed to build {failing}: {error}\n"
            f"  last lines of {log_path}:\n{tail}")


def _where(project: Project, need: ImageNeed, path: DocPath) -> str:
    function = project.functions[need.functions[0]]
    if function.doc is None:
        return "environment"
    line, col = function.doc.where(path)
    return f"{function.file}:{line}:{col}"


def _setup_script(instruction: str) -> str | None:
    """The script of a `RUN ["/bin/sh", "-c", SCRIPT]` instruction."""
    try:
        words = json.loads(instruction.removeprefix("RUN").strip())
    except ValueError:
        return None
    return words[-1] if isinstance(words, list) and words and isinstance(words[-1], str) else None


def _step_origin(step: str, spec: ImageSpec) -> DocPath:
    """Which part of the function's `environment` a Dockerfile step comes from."""
    match = _STEP.match(step)
    instruction = match[3] if match else ""
    for index, setup in enumerate(spec.environment.setup):
        if _setup_script(instruction) == setup:
            return ("environment", "setup", index)
    if instruction.startswith("FROM") or not instruction:
        return ("environment", "base_image")
    if "apt-get" in instruction:
        return ("environment", "system_packages")
    if "pip install" in instruction or instruction.startswith("COPY"):
        key = "requirements_file" if spec.environment.requirements_file else "requirements"
        return ("environment", key)
    return ("environment",)


def ids_by_name(ids: Mapping[str, str]) -> dict[str, str]:
    """Image ids by name as users write them: `python:3.11-slim` for `docker.io/library/...`."""
    named = dict(ids)
    for tag, image_id in ids.items():
        short = tag.removeprefix("docker.io/").removeprefix("library/")
        named.setdefault(short, image_id)
    return named


def reachable_image_ids() -> dict[str, str] | None:
    """The engine's image ids by name, as `build` hashes environments with them; None
    when no engine answers (nothing is started for it)."""

    try:
        return ids_by_name(LocalImages.read(connect(lambda line: None, start=False)).ids)
    except RunyardError:
        return None
