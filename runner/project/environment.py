"""A function's environment, resolved against the project, and its content hash; and the
files a function depends on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from runner.errors import RunyardError
from runner.files import package_file
from runner.frozen import frozen
from runner.project.model import Environment, Function, Project, is_repo_path
from runner.project.refs import requirement_lines
from runner.project.source import ProjectSource, SourceError

IMAGE_PREFIX = "runyard"
LABEL_PROJECT = "dev.runyard.project"
LABEL_ENV_HASH = "dev.runyard.env-hash"
LABEL_FUNCTIONS = "dev.runyard.functions"
# What runner/runtime/notebook.py runs a notebook with: added to the image of a function
# whose code is a notebook, and only to it (the user's own pin of one of them wins).
NOTEBOOK_REQUIREMENTS = ("nbclient==0.11.0", "nbformat==5.11.1", "nbconvert==7.17.2",
                         "ipykernel==7.4.0")


@frozen
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
    return package_file("templates", "Dockerfile.j2").read_text("utf-8")


def function_files(function: Function, source: ProjectSource | None = None) -> list[str]:
    """The files a function depends on: its YAML, code, environment and command's files."""
    files = [function.file]
    for path in (function.code, function.environment.requirements_file):
        if path:
            files.append(path)
    for arg in function.command or ():
        if is_repo_path(arg) and "/" in arg and (source is None or source.is_file(arg)):
            files.append(arg)
    return list(dict.fromkeys(files))


def image_spec(project: Project, function: Function, source: ProjectSource,
               base_image_ids: Mapping[str, str]) -> ImageSpec:
    """The image a function runs in; `base_image_ids` maps local image names to ids."""
    env = function.environment
    base = base_image(project, function)
    requirements = list(env.requirements)
    if env.requirements_file:
        requirements += _requirements_file(function, source)
    if function.is_notebook:
        requirements += notebook_requirements(requirements)
    resolved = Environment(base, tuple(requirements), env.requirements_file,
                           env.system_packages, env.setup, env.env)
    base_id = base_image_ids.get(base)
    return ImageSpec(project.name, resolved, tuple(requirements), base_id,
                     environment_hash(resolved, base_id))


def base_image(project: Project, function: Function) -> str:
    """The image a function's image is built on: its own, else the project's default."""
    return function.environment.base_image or project.base_image


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


def notebook_requirements(requirements: list[str]) -> list[str]:
    """The notebook runner's requirements that `requirements` does not name already."""
    named = {_project_name(requirement) for requirement in requirements}
    return [pin for pin in NOTEBOOK_REQUIREMENTS if _project_name(pin) not in named]


def _project_name(requirement: str) -> str | None:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        return canonicalize_name(Requirement(requirement).name)
    except InvalidRequirement:  # the checks report it
        return None


def _requirements_file(function: Function, source: ProjectSource) -> list[str]:
    path = function.environment.requirements_file or ""
    try:
        text = source.read(path).decode("utf-8-sig", "replace")
    except SourceError as error:
        raise RunyardError(f"{function.file}: requirements_file {path!r} cannot be read at "
                           f"{source.label} ({error.reason})") from error
    return [requirement for _, requirement in requirement_lines(text)]
