"""The artifact store: files addressed by their content hash, in a folder (or a
`file://` URL; other fsspec URLs where fsspec is installed)."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Protocol

from runner.errors import RunyardError
from runner.record.owner import Owner

CHUNK = 1 << 20
INCOMING = ".incoming-"  # what is being stored: .incoming-<runner>-<random>, renamed when whole
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Stored(NamedTuple):
    hash: str  # "sha256:<hex>"
    size: int
    uri: str


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
        with source.open("rb") as handle:
            return self.put_stream(handle)

    def put_stream(self, handle: Readable, limit: int | None = None) -> Stored:
        """Store what `handle` reads; OverflowError past `limit` bytes (nothing is kept)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self.root,
                                         prefix=f"{INCOMING}{Owner.current().folder_name}-")
        try:
            with os.fdopen(fd, "wb") as out:
                digest, size = _copy_hashing(handle, out, limit)
            target = self.local_path(digest)
            if target.exists():
                os.unlink(temporary)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(temporary, 0o444)  # runs read it as another user; nobody writes it
                os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._upload(digest, target)
        return Stored(digest, size, f"store://{digest}")

    def remove_incoming_of_lost(self) -> list[Owner]:
        """Remove the partial copies that lost runners left (each names its runner); their
        runners."""
        lost = []
        for path in self.root.glob(f"{INCOMING}*") if self.root.is_dir() else ():
            owner = Owner.from_folder_name(path.name.removeprefix(INCOMING).rpartition("-")[0])
            if owner is not None and owner.is_lost():
                path.unlink(missing_ok=True)
                lost.append(owner)
        return lost

    def _upload(self, digest: str, target: Path) -> None:
        if self.remote is not None:
            fs, root = self.remote
            remote = f"{root}/{self.key(digest)}"
            if not fs.exists(remote):
                fs.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)
                fs.put_file(str(target), remote)

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
        if not DIGEST.fullmatch(digest):
            raise RunyardError(f"{digest[:80]!r} is not a content hash (sha256: and 64 hex digits)")
        algorithm, _, hexdigest = digest.partition(":")
        return f"{algorithm}/{hexdigest[:2]}/{hexdigest}"

    def has(self, digest: str) -> bool:
        return self.path_of(digest).is_file()


def _copy_hashing(source: Readable, target: BinaryIO, limit: int | None) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(CHUNK):
        size += len(chunk)
        if limit is not None and size > limit:
            raise OverflowError(f"over the limit of {limit} bytes")
        digest.update(chunk)
        target.write(chunk)
    return f"sha256:{digest.hexdigest()}", size


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
