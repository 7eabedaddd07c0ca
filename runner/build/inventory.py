"""The project's images on the engine: which functions use them, and pruning the rest."""

from __future__ import annotations

from typing import NamedTuple

from runner.build.builder import LocalImages, image_needs
from runner.build.engine import DockerEngine
from runner.project.environment import LABEL_ENV_HASH, LABEL_PROJECT
from runner.project.model import Project
from runner.project.source import ProjectSource


class ProjectImage(NamedTuple):
    tag: str
    image_id: str
    env_hash: str
    size: int
    functions: tuple[str, ...]


def project_images(engine: DockerEngine, project: Project,
                   source: ProjectSource) -> list[ProjectImage]:
    used = {need.spec.env_hash: need.functions
            for need in image_needs(project, source, LocalImages.read(engine))}
    found = []
    for image in engine.images({"label": f"{LABEL_PROJECT}={project.name}"}):
        env_hash = (image.get("Labels") or {}).get(LABEL_ENV_HASH, "")
        for tag in image.get("RepoTags") or ("<none>",):
            found.append(ProjectImage(tag, image["Id"], env_hash, image.get("Size", 0),
                                      used.get(env_hash, ())))
    return sorted(found)


def prune_images(engine: DockerEngine, images: list[ProjectImage]) -> list[ProjectImage]:
    removed = []
    for image in images:
        if not image.functions:
            engine.remove_image(image.image_id if image.tag == "<none>" else image.tag)
            removed.append(image)
    return removed


def tags_by_env_hash(engine: DockerEngine, project: str) -> dict[str, str]:
    """A tag of each of the project's images on the engine, by its environment hash."""
    found = {}
    for image in engine.images({"label": f"{LABEL_PROJECT}={project}"}):
        env_hash = (image.get("Labels") or {}).get(LABEL_ENV_HASH)
        if env_hash:
            found[env_hash] = (image.get("RepoTags") or [image["Id"]])[0]
    return found
