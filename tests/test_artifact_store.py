"""The artifact store: content-addressed, in a folder, a file:// URL or an fsspec URL."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from pathlib import Path

import pytest

from runner.errors import RunyardError
from runner.record.artifacts import ArtifactStore
from tests.helpers import commit_all, make_repo

PROJECT = Path(__file__).parent / "projects" / "run"


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "made.bin"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("as_url", [False, True])
def test_folder_store_keeps_files_by_content(tmp_path: Path, as_url: bool) -> None:
    root = tmp_path / "store"
    store = ArtifactStore(f"file://{root}" if as_url else "store", tmp_path)
    stored = store.put(_file(tmp_path, b"hello"))
    digest = "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert stored.hash == digest and stored.size == 5 and stored.uri == f"store://{digest}"
    assert store.path_of(digest) == root / "sha256" / digest[7:9] / digest[7:]
    assert store.path_of(digest).read_bytes() == b"hello"
    assert store.has(digest)
    assert store.put(_file(tmp_path, b"hello")) == stored  # the same bytes, stored once


def test_fsspec_store_is_read_through_a_local_cache(tmp_path: Path) -> None:
    url = f"memory://runyard-{uuid.uuid4().hex}/artifacts"
    writer = ArtifactStore(url, tmp_path / "one")
    stored = writer.put(_file(tmp_path, b"remote bytes"))
    reader = ArtifactStore(url, tmp_path / "two")  # another checkout: an empty cache
    assert not reader.local_path(stored.hash).exists()
    assert reader.path_of(stored.hash).read_bytes() == b"remote bytes"
    assert reader.local_path(stored.hash).parent.is_relative_to(tmp_path / "two" / ".runyard")


def test_unknown_fsspec_protocol_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RunyardError, match="no-such-protocol"):
        ArtifactStore("no-such-protocol://x/y", tmp_path)


def test_runs_hand_artifacts_on_through_an_fsspec_store(tmp_path: Path) -> None:
    """A run's artifact goes to the remote store and a later run reads it by artifact://."""
    import runner

    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    url = f"memory://runyard-{uuid.uuid4().hex}/store"
    text = (project / "project.yaml").read_text()
    (project / "project.yaml").write_text(f"{text}artifacts: {{store: '{url}'}}\n")
    make_repo(project)
    commit_all(project, "a project with a remote artifact store")
    loaded = runner.load_project(project)
    made = loaded.run_function("calc", params={"x": 5}, local=True, watch=False)
    made.wait_for_completion()
    assert made.state() == "completed"
    shutil.rmtree(project / ".runyard" / "artifact-cache")  # only the remote has it now
    used = loaded.run_function("calc", handler="digests", inputs={"report": "artifact://report"},
                               local=True, watch=False).wait_for_completion()
    assert used.state() == "completed"
    assert used.output("report") == "sha256:" + hashlib.sha256(b"x=5 y=2\n").hexdigest()
