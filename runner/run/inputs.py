"""Inputs of a run: repo paths from the snapshot, fetched URLs, stored artifacts."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path
from typing import NamedTuple

from runner.errors import RunyardError
from runner.record.artifacts import ArtifactStore, file_hash
from runner.record.results import ResultsBranch

ARTIFACT_SCHEME = "artifact://"
STORE_SCHEME = "store://"


class Input(NamedTuple):
    name: str
    uri: str
    path: Path  # on the host
    hash: str
    size: int


def resolve_input(name: str, uri: str, code: Path, folder: Path, store: ArtifactStore,
                  results: ResultsBranch | None) -> Input:
    """Make input `name` a local file (under `folder` unless it is in the snapshot)."""
    if uri.startswith(ARTIFACT_SCHEME):
        path = store.path_of(_artifact_hash(uri, results))
    elif uri.startswith(STORE_SCHEME):
        path = store.path_of(uri.removeprefix(STORE_SCHEME))
    elif uri.startswith("file://"):
        path = _copy(Path(uri.removeprefix("file://")), folder / name, uri)
    elif uri.startswith(("http://", "https://")):
        path = _fetch(uri, folder / name)
    elif "://" in uri:
        raise RunyardError(f"input {name}: {uri!r} uses a scheme runyard cannot fetch")
    else:
        path = code / uri
        if not path.is_file():
            raise RunyardError(f"input {name}: {uri!r} is not a file of the project")
    if not path.is_file():
        raise RunyardError(f"input {name}: {uri!r} is missing from the artifact store ({path})")
    return Input(name, uri, path, file_hash(path), path.stat().st_size)


def _artifact_hash(uri: str, results: ResultsBranch | None) -> str:
    key, _, uid = uri.removeprefix(ARTIFACT_SCHEME).partition("@")
    if results is None:
        raise RunyardError(f"{uri}: there are no records to find it in")
    if uid:
        record = results.read(results.find(uid))
        found = [a for a in record["status"].get("artifacts", []) if a["key"] == key]
        if not found:
            raise RunyardError(f"{uri}: run {uid} logged no artifact {key!r}")
        return str(found[0]["hash"])
    newest = results.newest_artifact(key)
    if newest is None:
        raise RunyardError(f"{uri}: no completed run has logged an artifact {key!r} yet")
    return str(newest["hash"])


def _copy(source: Path, target: Path, uri: str) -> Path:
    if not source.is_file():
        raise RunyardError(f"input {uri!r}: no such file")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def _fetch(url: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as error:
        raise RunyardError(f"input {url!r} could not be fetched: {error}") from error
    return target
