"""The artifact store: files addressed by their content hash, in a folder (or a
`file://` URL; other fsspec URLs where fsspec is installed)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from runner.errors import RunyardError

CHUNK = 1 << 20


class Stored(NamedTuple):
    hash: str  # "sha256:<hex>"
    size: int
    uri: str


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


class ArtifactStore:
    """Content-addressed files: `<root>/sha256/ab/<hex>`.

    The root is a folder (relative paths start at `base`), a `file://` URL, or
    any other fsspec URL (`s3://bucket/artifacts`, ...) where fsspec and that
    filesystem's package are installed; a remote store is read through a local
    cache under `base/.runyard/artifact-cache`.
    """

    def __init__(self, location: str, base: Path) -> None:
        self.remote: tuple[Any, str] | None = None
        if location.startswith("file://"):
            location = location.removeprefix("file://")
        elif "://" in location:
            self.remote = _remote(location)
            location = str(base / ".runyard" / "artifact-cache")
        self.root = (base / location) if not os.path.isabs(location) else Path(location)

    def put(self, source: Path) -> Stored:
        digest = file_hash(source)
        target = self.local_path(digest)
        if not target.exists():
            _copy_in(source, target)
        if self.remote is not None:
            fs, root = self.remote
            remote = f"{root}/{self.key(digest)}"
            if not fs.exists(remote):
                fs.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)
                fs.put_file(str(target), remote)
        return Stored(digest, source.stat().st_size, f"store://{digest}")

    def path_of(self, digest: str) -> Path:
        """A local file with the artifact's bytes (fetched into the cache if remote)."""
        target = self.local_path(digest)
        if self.remote is not None and not target.exists():
            fs, root = self.remote
            remote = f"{root}/{self.key(digest)}"
            if fs.exists(remote):
                target.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(remote, str(target))
                target.chmod(0o644)
        return target

    def local_path(self, digest: str) -> Path:
        return self.root / self.key(digest)

    @staticmethod
    def key(digest: str) -> str:
        algorithm, _, hexdigest = digest.partition(":")
        return f"{algorithm}/{hexdigest[:2]}/{hexdigest}"

    def has(self, digest: str) -> bool:
        return self.path_of(digest).is_file()


def _copy_in(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    os.close(handle)
    shutil.copyfile(source, temporary)
    os.chmod(temporary, 0o644)  # runs read it as another user
    os.replace(temporary, target)


def _remote(url: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError as error:
        raise RunyardError(f"artifact store {url!r} needs fsspec: pip install fsspec "
                           "(and the package of that filesystem)") from error
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as error:
        raise RunyardError(f"artifact store {url!r}: {error}") from error
    return fs, str(root).rstrip("/")
