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
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import units
from runner.errors import RunyardError

MiB = 1 << 20
GiB = 1 << 30
RUNYARD_IMAGES = "runyard/*"
_HEX_ID = re.compile(r"^(sha256:)?[0-9a-f]{64}$")


@dataclass(frozen=True)
class Limits:
    """How much a run may leave behind; a project may set lower ones (`limits:`)."""

    results: int = MiB  # results.json, artifacts.json and error.json, each
    artifact: int = GiB  # one artifact, or one input fetched or copied in
    disk: int = 2 * GiB  # a run's scratch: its working folder, outputs and temporary files

    def within(self, maximum: Limits) -> Limits:
        return Limits(*(min(mine, most) for mine, most in
                        zip(dataclasses.astuple(self), dataclasses.astuple(maximum), strict=True)))


@dataclass(frozen=True)
class Policy:
    secrets: frozenset[str] | None = frozenset()  # None: every secret the project names
    host_network: bool = False
    file_inputs: tuple[str, ...] = ()  # host folders `file://` inputs may come from
    private_urls: bool = False  # URL inputs may reach loopback, link-local, private addresses
    base_images: tuple[str, ...] = ()  # patterns of allowed base images; none: any but runyard's
    local_backend: bool = False  # runs on the host itself, outside any container
    build_timeout: float = 1800.0
    build_memory: int = 4 * GiB
    limits: Limits = Limits()

    @classmethod
    def personal(cls) -> Policy:
        """A person's own run in their own checkout: they are the operator."""
        return cls(secrets=None, host_network=True, file_inputs=("/",), private_urls=True,
                   local_backend=True, build_timeout=3600.0)

    def allows_secret(self, name: str) -> bool:
        return self.secrets is None or name in self.secrets

    def allows_file(self, path: Path) -> bool:
        """`path` (resolved, no links left) lies in one of the allowed folders."""
        return any(path.is_relative_to(Path(folder).resolve()) for folder in self.file_inputs)

    def allows_address(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return self.private_urls or ip.is_global

    def base_image_refusal(self, image: str, project: str) -> str | None:
        """Why `image` may not be a base image here, or None."""
        if _HEX_ID.match(image):
            return "an image id hides what it is: name the image"
        if self.base_images:
            if any(fnmatch.fnmatchcase(image, pattern) for pattern in self.base_images):
                return None
            return f"not one of the base images this runner allows ({', '.join(self.base_images)})"
        if fnmatch.fnmatchcase(image, RUNYARD_IMAGES) and not image.startswith(f"runyard/{project}:"):
            return "another project's runyard image"
        return None


GIT_KEYS = {
    "allowsecret": "secrets", "allowhostnetwork": "host_network", "allowfiles": "file_inputs",
    "allowprivateurls": "private_urls", "allowimage": "base_images",
    "allowlocalbackend": "local_backend", "buildtimeout": "build_timeout",
    "buildmemory": "build_memory", "maxresults": "results", "maxartifact": "artifact",
    "maxdisk": "disk",
}


def read_policy(git_dir: Path) -> Policy:
    """The strict defaults, widened by the repository's `runyard.*` git config."""
    done = subprocess.run(["git", "--git-dir", str(git_dir), "config", "--get-regexp", r"^runyard\."],
                          capture_output=True, text=True)
    values: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key.removeprefix("runyard.").lower(), []).append(value)
    return policy_from(values, f"the git config of {git_dir}")


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
            if name in ("results", "artifact", "disk"):
                limits[name] = units.parse_memory(found[-1])
            else:
                fields[name] = _PARSERS[name](found)
        except ValueError as error:
            raise RunyardError(f"{where}: runyard.{key}: {error}") from error
    return Policy(**fields, limits=Limits(**limits))


_PARSERS: dict[str, Callable[[list[str]], Any]] = {
    "secrets": frozenset,
    "file_inputs": tuple,
    "base_images": tuple,
    "build_timeout": lambda found: units.parse_duration(found[-1]),
    "build_memory": lambda found: units.parse_memory(found[-1]),
    "host_network": lambda found: _boolean(found[-1]),
    "private_urls": lambda found: _boolean(found[-1]),
    "local_backend": lambda found: _boolean(found[-1]),
}


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{text!r} is not true or false")
