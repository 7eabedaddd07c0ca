"""The project's images on the engine: which functions use them, and pruning the rest.

Two kinds: environment images (one per environment hash) and the swarm backend's run
images (a thin layer with the code and the runtime on top of one, labelled LAYER_LABEL,
pushed to the project's registry: one per environment and tree, so one more with every
revision run on the swarm).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import NamedTuple

from runner.build.builder import LocalImages, image_needs
from runner.build.engine import DockerEngine, EngineError
from runner.build.registry import Registry
from runner.errors import RunyardError
from runner.project.environment import IMAGE_PREFIX, LABEL_ENV_HASH, LABEL_PROJECT
from runner.project.model import Project
from runner.project.source import ProjectSource

LAYER_LABEL = "dev.runyard.layer"  # a run image's tree: the hash of its build context


class ProjectImage(NamedTuple):
    tag: str
    image_id: str
    env_hash: str
    size: int
    functions: tuple[str, ...]
    layer: str  # a run image's tree hash; "" for an environment image
    created: int  # seconds since the epoch


def project_images(engine: DockerEngine, project: Project,
                   source: ProjectSource) -> list[ProjectImage]:
    used = {need.spec.env_hash: need.functions
            for need in image_needs(project, source, LocalImages.read(engine))}
    found = []
    for image in engine.images({"label": f"{LABEL_PROJECT}={project.name}"}):
        labels = image.get("Labels") or {}
        env_hash = labels.get(LABEL_ENV_HASH, "")
        for tag in image.get("RepoTags") or ("<none>",):
            found.append(ProjectImage(tag, image["Id"], env_hash, image.get("Size", 0),
                                      used.get(env_hash, ()), labels.get(LAYER_LABEL, ""),
                                      image.get("Created", 0)))
    return sorted(found)


def prune_images(engine: DockerEngine, images: list[ProjectImage]) -> list[ProjectImage]:
    """Remove the environment images no function uses, and the run images but the newest
    of each environment in use (the next run of the newest revision needs it); an image
    a container uses stays."""
    kept = newest_layers(images)
    removed = []
    for image in sorted(images, key=lambda i: not i.layer):  # a run image's parent after it
        if (image.image_id in kept) if image.layer else bool(image.functions):
            continue
        try:
            engine.remove_image(image.image_id if image.tag == "<none>" else image.tag)
        except EngineError as error:
            if error.status != 409:  # 409: a container uses it
                raise
            continue
        removed.append(image)
    return removed


def newest_layers(images: Iterable[ProjectImage]) -> set[str]:
    """The ids of the newest run image of each environment a function uses."""
    newest: dict[str, ProjectImage] = {}
    for image in images:
        if image.layer and image.functions and (
                image.env_hash not in newest or image.created > newest[image.env_hash].created):
            newest[image.env_hash] = image
    return {image.image_id for image in newest.values()}


def run_repository(project: str) -> str:
    """The repository of a project's run images in its registry."""
    return f"{IMAGE_PREFIX}/{project}"


def prune_registry(engine: DockerEngine, registry: Registry, project: str,
                   keep: Iterable[ProjectImage]) -> list[str]:
    """Delete the project's run images from the registry but those of the images `keep`
    and those a service runs; what was deleted, as REGISTRY/REPOSITORY:TAG."""
    repository = run_repository(project)
    prefix = f"{registry.address}/{repository}:"
    kept_tags = {image.tag.removeprefix(prefix) for image in keep
                 if image.tag.startswith(prefix)}
    in_use = services_images(engine, project)
    deleted = []
    for tag in registry.tags(repository):
        if tag in kept_tags:
            continue
        digest = registry.digest(repository, tag)
        if digest is None or f"{registry.address}/{repository}@{digest}" in in_use:
            continue
        registry.delete(repository, digest)
        deleted.append(f"{prefix}{tag}")
    return deleted


def services_images(engine: DockerEngine, project: str) -> set[str]:
    """The images (REGISTRY/REPOSITORY@DIGEST) the project's swarm services run."""
    with contextlib.suppress(EngineError):  # not a swarm manager: no services
        return {((service.get("Spec") or {}).get("TaskTemplate") or {})
                .get("ContainerSpec", {}).get("Image", "")
                for service in engine.services({"label": f"{LABEL_PROJECT}={project}"})}
    return set()


def drop_run_image(engine: DockerEngine, registry: Registry, tag: str, pinned: str) -> None:
    """Remove a run image (`tag`, pushed as `pinned`: REGISTRY/REPOSITORY@DIGEST) here and
    from the registry, unless a container or a service uses it. Best effort: what cannot
    be removed now stays for `runyard images --prune`."""
    project = tag.rpartition(":")[0].rpartition("/")[2]
    if pinned in services_images(engine, project):
        return
    try:
        engine.remove_image(tag)
    except EngineError as error:
        if error.status != 404:  # 409: a container uses it; else the engine is in trouble
            return
    repository, _, digest = pinned.removeprefix(f"{registry.address}/").partition("@")
    with contextlib.suppress(RunyardError):
        registry.delete(repository, digest)



def tags_by_env_hash(engine: DockerEngine, project: str) -> dict[str, str]:
    """A tag of each of the project's environment images on the engine, by its environment
    hash (a run image carries its environment's labels: not one of them)."""
    found = {}
    for image in engine.images({"label": f"{LABEL_PROJECT}={project}"}):
        labels = image.get("Labels") or {}
        env_hash = labels.get(LABEL_ENV_HASH)
        if env_hash and LAYER_LABEL not in labels:
            found[env_hash] = (image.get("RepoTags") or [image["Id"]])[0]
    return found
