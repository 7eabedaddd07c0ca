"""The artifact store: files addressed by their content hash, in a folder (or a
`file://` URL; other fsspec URLs where fsspec is installed)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

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
    """Content-addressed files below `root`: `<root>/sha256/ab/<hex>`."""

    def __init__(self, location: str, base: Path) -> None:
        if location.startswith("file://"):
            location = location.removeprefix("file://")
        elif "://" in location:
            raise RunyardError(f"artifact store {location!r}: only folders and file:// URLs "
                               "are supported so far")
        self.root = (base / location) if not os.path.isabs(location) else Path(location)

    def put(self, source: Path) -> Stored:
        digest = file_hash(source)
        target = self.path_of(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
            os.close(handle)
            shutil.copyfile(source, temporary)
            os.chmod(temporary, 0o644)  # runs read it as another user
            os.replace(temporary, target)
        return Stored(digest, source.stat().st_size, f"store://{digest}")

    def path_of(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        return self.root / algorithm / hexdigest[:2] / hexdigest

    def has(self, digest: str) -> bool:
        return self.path_of(digest).is_file()
