"""A function's environment, resolved against the project, and its content hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources

from runner.model import Environment, Function, Project
from runner.refs import requirement_lines
from runner.source import ProjectSource

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
               base_image_ids: dict[str, str]) -> ImageSpec:
    """The image a function runs in; `base_image_ids` maps local image names to ids."""
    env = function.environment
    base = env.base_image or project.base_image
    requirements = list(env.requirements)
    if env.requirements_file:
        text = source.read(env.requirements_file).decode("utf-8-sig", "replace")
        requirements += [requirement for _, requirement in requirement_lines(text)]
    content = {
        "base_image": base,
        "base_image_id": base_image_ids.get(base),
        "system_packages": sorted(env.system_packages),
        "requirements": requirements,
        "setup": list(env.setup),
        "env": dict(sorted(env.env.items())),
        "template": dockerfile_template(),
    }
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    resolved = Environment(base, tuple(requirements), env.requirements_file,
                           env.system_packages, env.setup, env.env)
    return ImageSpec(project.name, resolved, tuple(requirements), base_image_ids.get(base), digest)
