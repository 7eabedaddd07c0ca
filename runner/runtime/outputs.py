"""What a run leaves in its outputs folder: results, artifacts and the error, if any.

Layout (all the host reads):
    <outputs>/results.json      {key: value}
    <outputs>/artifacts.json    [{key, kind, path, format}], path relative to artifacts/
    <outputs>/artifacts/...     logged artifacts at <key>/<file>; loose files and folders
    <outputs>/error.json        {type, message}, only when the run failed
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable, Mapping

from .jsonable import Warn, to_jsonable, write_json

TYPE_CHECKING = False  # typing is not imported at run time: it costs each run's start
if TYPE_CHECKING:
    from typing import Any

_ARTIFACT_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")


class ArtifactRecord:
    def __init__(self, key: str, kind: str, path: str, format: str | None) -> None:
        self.key, self.kind, self.path, self.format = key, kind, path, format

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "path": self.path, "format": self.format}


class OutputStore:
    """The run's results and artifacts, kept in memory and written out at the end."""

    def __init__(self, outputs_dir: str, warn: Warn, autosave: bool = False) -> None:
        """`autosave`: write the files after each change, for another process to read
        (a notebook's kernel logs, the runtime's process keeps)."""
        self._outputs = outputs_dir
        self._warn = warn
        self._autosave = autosave
        self._results: dict[str, Any] = {}
        self._artifacts: dict[str, ArtifactRecord] = {}

    @property
    def artifacts_dir(self) -> str:
        return os.path.join(self._outputs, "artifacts")

    @property
    def results(self) -> dict[str, Any]:
        return copy.deepcopy(self._results)

    def prepare(self) -> None:
        """Create the artifacts folder; drop the files an earlier attempt may have left."""
        os.makedirs(self.artifacts_dir, exist_ok=True)
        for name in ("results.json", "artifacts.json", "error.json"):
            _remove(os.path.join(self._outputs, name))

    def log_result(self, key: str, value: object) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"a result key must be a non-empty string, not {key!r}")
        self._results[key] = to_jsonable(value, self._warn, f"result {key!r}")
        if self._autosave:
            self.write()

    def log_return(self, value: object) -> None:
        """A handler's return value: a mapping adds results, anything else is `return`."""
        if value is None:
            return
        if isinstance(value, Mapping):
            for key, item in value.items():
                self.log_result(str(key), item)
        else:
            self.log_result("return", value)

    def store_file(self, key: str, source: str, kind: str, fmt: str | None) -> str:
        """Copy the file or folder at `source` in as artifact `key`; return the copy's path."""
        if not os.path.exists(source):
            raise FileNotFoundError(f"artifact {key!r}: there is no file or folder at {source}")
        if os.path.commonpath([os.path.abspath(source), self.artifacts_dir]) == os.path.abspath(source):
            raise ValueError(f"artifact {key!r}: {source} holds the artifacts folder itself")
        name = os.path.basename(os.path.normpath(source))
        if fmt is None and os.path.isfile(source):
            fmt = _suffix(name)

        def fill(folder: str) -> None:
            import shutil  # (only here and in _remove: it costs a run's start some 3 ms)

            target = os.path.join(folder, name)
            if os.path.isdir(source):
                shutil.copytree(source, target)
            else:
                shutil.copy(source, target)

        return self._store(key, kind, name, fmt, fill)

    def store_body(
        self, key: str, body: str | bytes | bytearray | memoryview, kind: str, fmt: str | None
    ) -> str:
        """Write `body` as artifact `key`, in a file named after the key and format."""
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        name = f"{key}.{fmt}" if fmt else key

        def fill(folder: str) -> None:
            with open(os.path.join(folder, name), "wb") as handle:
                handle.write(data)

        return self._store(key, kind, name, fmt, fill)

    def _store(self, key: str, kind: str, name: str, fmt: str | None, fill: Callable[[str], None]) -> str:
        _check_key(key)
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"artifact {key!r}: kind must be a non-empty string, not {kind!r}")
        # Fill a hidden staging folder first, so a source inside the old copy survives.
        staging = os.path.join(self.artifacts_dir, f".{key}.{os.getpid()}.staging")
        final = os.path.join(self.artifacts_dir, key)
        _remove(staging)
        os.mkdir(staging)
        try:
            fill(staging)
            _remove(final)
            os.rename(staging, final)
        except BaseException:
            _remove(staging)
            raise
        self._artifacts.pop(key, None)
        self._artifacts[key] = ArtifactRecord(key, kind, f"{key}/{name}", fmt)
        if self._autosave:
            self.write()
        return os.path.join(final, name)

    def adopt_loose_entries(self) -> None:
        """Make every top-level file or folder under artifacts/ not logged yet an artifact."""
        try:
            names = sorted(os.listdir(self.artifacts_dir))
        except OSError as exc:  # the handler may have removed it
            self._warn(f"cannot list the artifacts folder: {exc}")
            return
        for name in names:
            if name.startswith(".") or name in self._artifacts:
                continue
            key = _stem(name)
            if key in self._artifacts:
                key = name
            if key in self._artifacts:
                self._warn(f"artifacts/{name}: key {key!r} is taken; not recorded")
                continue
            is_file = os.path.isfile(os.path.join(self.artifacts_dir, name))
            self._artifacts[key] = ArtifactRecord(key, "file", name, _suffix(name) if is_file else None)

    def load_results_file(self) -> None:
        """Merge the results.json a command (or a notebook's kernel) wrote, when it holds
        a JSON object."""
        data = self._read_written("results.json", dict)
        for key, value in (data or {}).items():
            self.log_result(key, value)

    def load_artifacts_file(self) -> None:
        """Merge the artifacts.json a notebook's kernel wrote: its entries that name a
        key and a path under the artifacts folder (the host checks them again)."""
        for entry in self._read_written("artifacts.json", list) or ():
            if not isinstance(entry, dict):
                continue
            key, kind, path, fmt = (entry.get(name) for name in ("key", "kind", "path", "format"))
            if isinstance(key, str) and isinstance(kind, str) and isinstance(path, str) \
                    and (fmt is None or isinstance(fmt, str)):
                self._artifacts.pop(key, None)
                self._artifacts[key] = ArtifactRecord(key, kind, path, fmt)

    def _read_written(self, name: str, kind: type[dict[str, Any]] | type[list[Any]]) -> Any:
        path = os.path.join(self._outputs, name)
        if not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            self._warn(f"{name} written by the run is not readable JSON ({exc}); ignored")
            return None
        if not isinstance(data, kind):
            what = "a JSON object" if kind is dict else "a JSON list"
            self._warn(f"{name} written by the run is a {type(data).__name__}, not {what}; ignored")
            return None
        return data

    def write(self) -> None:
        write_json(os.path.join(self._outputs, "results.json"), self._results)
        records = [record.to_json() for record in self._artifacts.values()]
        write_json(os.path.join(self._outputs, "artifacts.json"), records)

    def write_error(self, type_name: str, message: str) -> None:
        error = {"type": type_name, "message": message}
        write_json(os.path.join(self._outputs, "error.json"), error)


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not _ARTIFACT_KEY.fullmatch(key):
        raise ValueError(
            f"artifact key {key!r} is not valid: use letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-'"
        )


def _stem(name: str) -> str:
    return os.path.splitext(name)[0] or name


def _suffix(name: str) -> str | None:
    return os.path.splitext(name)[1][1:].lower() or None


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        import shutil

        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)
