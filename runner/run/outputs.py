"""What a run left in its outputs folder, read as the untrusted data it is.

The runtime's own checks ran inside the container and prove nothing here. So:
no link is followed (every path is opened one component at a time, relative to
its folder, without following links), only regular files and folders are read,
each file within its size limit, and every key and path is checked on this side.
Anything else is a refusal: the run fails with the reason, and nothing of it is
stored.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from runner.project.model import Limits
from runner.project.refs import ARTIFACT_KEY_PATTERN, compile_pattern
from runner.record.artifacts import ArtifactStore
from runner.record.model import Artifact
from runner.run.safefs import (
    Refused,
    describe,
    open_dir_at,
    open_folder,
    open_regular_at,
    opened_dir,
    split_relative,
)

ARTIFACT_KEY = compile_pattern(ARTIFACT_KEY_PATTERN)
_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,100}$")


class Outputs(NamedTuple):
    results: dict[str, Any]
    artifacts: tuple[Artifact, ...]
    error: str | None  # the handler's own error, from error.json
    refusal: str | None = None


def read_outputs(folder: Path, store: ArtifactStore, limits: Limits) -> Outputs:
    """The results, stored artifacts and error a run left in `folder`."""
    try:
        with opened_dir(open_folder(folder)) as top:
            results = _json_file(top, "results.json", limits.results, {})
            listed = _json_file(top, "artifacts.json", limits.results, [])
            error = _json_file(top, "error.json", limits.results, None)
            if not isinstance(results, dict):
                raise Refused(f"results.json holds a {type(results).__name__}, not an object")
            artifacts = _store_artifacts(top, listed, store, limits)
    except Refused as refusal:
        return Outputs({}, (), None, f"outputs refused: {refusal}")
    return Outputs(results, artifacts, _error_text(error))


def _error_text(error: Any) -> str | None:
    if not isinstance(error, dict):
        return None
    return f"{error.get('type')}: {error.get('message')}"


def _store_artifacts(top: int, listed: Any, store: ArtifactStore,
                     limits: Limits) -> tuple[Artifact, ...]:
    if not isinstance(listed, list):
        raise Refused("artifacts.json is not a list")
    entries = [_artifact_entry(item) for item in listed]
    keys = [entry[0] for entry in entries]
    if len(set(keys)) != len(keys):
        raise Refused("artifacts.json lists a key twice")
    if not entries:
        return ()
    stored = []
    with opened_dir(open_dir_at(top, "artifacts")) as artifacts:
        for key, kind, fmt, path in entries:
            kept = _store_one(artifacts, path, store, limits.artifact)
            if kept is None:
                continue  # listed, then removed by the handler: nothing to keep
            digest, size, is_tree = kept
            stored.append(Artifact(key=key, kind=kind, format="tar" if is_tree else fmt,
                                   hash=digest, size=size, uri=f"store://{digest}"))
    return tuple(stored)


def _artifact_entry(item: Any) -> tuple[str, str, str | None, str]:
    if not isinstance(item, dict):
        raise Refused(f"an entry of artifacts.json is a {type(item).__name__}, not an object")
    key, kind, fmt, path = (item.get(name) for name in ("key", "kind", "format", "path"))
    if not isinstance(key, str) or not ARTIFACT_KEY.fullmatch(key):
        raise Refused(f"artifact key {str(key)[:80]!r} is not a valid key")
    kind = kind if kind is not None else "file"
    if not isinstance(kind, str) or not _NAME.fullmatch(kind):
        raise Refused(f"artifact {key!r}: kind {str(kind)[:80]!r} is not a valid name")
    if fmt is not None and (not isinstance(fmt, str) or not _NAME.fullmatch(fmt)):
        raise Refused(f"artifact {key!r}: format {str(fmt)[:80]!r} is not a valid name")
    if not isinstance(path, str) or not path:
        raise Refused(f"artifact {key!r}: no path")
    return key, kind, fmt, path


def _store_one(folder: int, path: str, store: ArtifactStore,
               limit: int) -> tuple[str, int, bool] | None:
    """Store the file or folder at `path` (relative to `folder`): (hash, size, is a folder)."""
    parts = split_relative(path)
    fd = folder
    opened: list[int] = []
    try:
        for part in parts[:-1]:
            fd = open_dir_at(fd, part)
            opened.append(fd)
        try:
            mode = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return None
        if stat.S_ISDIR(mode):
            with opened_dir(open_dir_at(fd, parts[-1])) as tree, _tar(tree, path, limit) as tar:
                kept = store.put_stream(tar)  # the tar's files are within the limit
            return kept.hash, kept.size, True
        with os.fdopen(open_regular_at(fd, parts[-1], path), "rb") as handle:
            kept = store.put_stream(handle, limit)
        return kept.hash, kept.size, False
    except OverflowError as error:
        raise Refused(f"artifact {path[:200]!r} is over the limit of {limit} bytes") from error
    finally:
        for each in opened:
            os.close(each)


SPOOL = 8 << 20  # a folder's tar is kept in memory up to this size, then in a file


def _tar(tree: int, path: str, limit: int) -> IO[bytes]:
    """A folder's regular files as a tar with fixed times and owners (same tree, same hash)."""
    buffer = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # noqa: SIM115 - the caller reads it
    total = 0
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for relative, entry, mode, fd in _walk(tree, path):
            info = tarfile.TarInfo(relative)
            info.mtime, info.mode = 0, 0o755 if stat.S_ISDIR(mode) else 0o644
            if stat.S_ISDIR(mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            with os.fdopen(open_regular_at(fd, entry, f"{path}/{relative}"), "rb") as handle:
                data = handle.read(limit + 1 - total)
            total += len(data)
            if total > limit:
                raise OverflowError(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def _walk(tree: int, path: str) -> Iterator[tuple[str, str, int, int]]:
    """(relative path, entry name, mode, folder fd) of everything under `tree`, sorted."""
    for root, dirs, files, root_fd in os.fwalk(".", dir_fd=tree, follow_symlinks=False):
        dirs.sort()
        prefix = "" if root == "." else root.removeprefix("./") + "/"
        for name in [*dirs, *sorted(files)]:
            mode = os.stat(name, dir_fd=root_fd, follow_symlinks=False).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise Refused(f"{path}/{prefix}{name} is {describe(mode)}, not a regular file")
            yield prefix + name, name, mode, root_fd


def _json_file(folder: int, name: str, limit: int, default: Any) -> Any:
    try:
        fd = open_regular_at(folder, name, name)
    except FileNotFoundError:
        return default
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise Refused(f"{name} is over the limit of {limit} bytes")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:
        raise Refused(f"{name} is not valid JSON") from error

