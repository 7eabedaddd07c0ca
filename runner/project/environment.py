"""A function's environment, resolved against the project, and its content hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from runner.errors import RunyardError
from runner.project.model import Environment, Function, Project
from runner.project.refs import requirement_lines
from runner.project.source import ProjectSource, SourceError

IMAGE_PREFIX = "runyard"
LABEL_PROJECT = "dev.runyard.project"
LABEL_ENV_HASH = "dev.runyard.env-hash"
LABEL_FUNCTIONS = "dev.runyard.functions"


@dataclass(frozen=True)
class ImageSpec:
    """What one image is made of: the environment, with the files it names read in."""

    project: str
    environment: Environment
    requirements: tuple[str, ...]
    base_image_id: str | None
    env_hash: str

    @property
    def tag(self) -> str:
        return f"{IMAGE_PREFIX}/{self.project}:{self.env_hash[:12]}"


def dockerfile_template() -> str:
    return (resources.files("runner") / "templates" / "Dockerfile.j2").read_text("utf-8")


def image_spec(project: Project, function: Function, source: ProjectSource,
               base_image_ids: Mapping[str, str]) -> ImageSpec:
    """The image a function runs in; `base_image_ids` maps local image names to ids."""
    env = function.environment
    base = env.base_image or project.base_image
    requirements = list(env.requirements)
    if env.requirements_file:
        requirements += _requirements_file(function, source)
    resolved = Environment(base, tuple(requirements), env.requirements_file,
                           env.system_packages, env.setup, env.env)
    base_id = base_image_ids.get(base)
    return ImageSpec(project.name, resolved, tuple(requirements), base_id,
                     environment_hash(resolved, base_id))


def environment_hash(environment: Environment, base_image_id: str | None) -> str:
    """The content hash of a resolved environment (requirements files read in) on a base
    image: what `plan` reports and `build` tags, so both must come from here."""
    content = {
        "base_image": environment.base_image,
        "base_image_id": base_image_id,
        "system_packages": sorted(environment.system_packages),
        "requirements": list(environment.requirements),
        "setup": list(environment.setup),
        "env": dict(sorted(environment.env.items())),
        "template": dockerfile_template(),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _requirements_file(function: Function, source: ProjectSource) -> list[str]:
    path = function.environment.requirements_file or ""
    try:
        text = source.read(path).decode("utf-8-sig", "replace")
    except SourceError as error:
        raise RunyardError(f"{function.file}: requirements_file {path!r} cannot be read at "
                           f"{source.label} ({error.reason})") from error
    return [requirement for _, requirement in requirement_lines(text)]
