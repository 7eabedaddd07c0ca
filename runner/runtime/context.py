"""The run context a handler gets as its `context` argument (MLRun-like)."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Mapping

from .items import DataItem
from .outputs import OutputStore
from .spec import LEVELS, Spec

TYPE_CHECKING = False  # typing is not imported at run time: it costs each run's start
if TYPE_CHECKING:
    import logging
    from typing import Any, TextIO


class RunLog:
    """The run's logger (`context.logger`), made when it is first used: importing logging
    costs each run's start some 8 ms, and most runs never log."""

    def __init__(self, uid: str, stream: TextIO) -> None:
        self._uid, self._stream = uid, stream
        self._logger: logging.Logger | None = None

    @property
    def logger(self) -> logging.Logger:
        if self._logger is None:
            self._logger = make_logger(self._uid, self._stream)
        return self._logger

    def warning(self, message: str) -> None:
        self.logger.warning(message)


def make_logger(uid: str, stream: TextIO) -> logging.Logger:
    """A logger writing `time level message` lines (UTC, ISO 8601) to `stream`."""
    import logging

    logger = logging.getLogger(f"runyard.run.{uid}")
    logger.setLevel(logging.DEBUG if os.environ.get("RUNYARD_DEBUG") else logging.INFO)
    logger.propagate = False
    formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger.handlers[:] = [handler]
    return logger


def input_items(spec: Spec) -> dict[str, DataItem]:
    return {name: DataItem(name, ref.url, ref.path, ref.hash) for name, ref in spec.inputs.items()}


class RunContext:
    """Parameters, inputs, secrets and logging of results and artifacts for one run."""

    def __init__(self, spec: Spec, store: OutputStore, log: RunLog) -> None:
        self._spec = spec
        self._store = store
        self._inputs = input_items(spec)
        self._log = log

    @property
    def logger(self) -> logging.Logger:
        return self._log.logger

    @property
    def uid(self) -> str:
        return self._spec.uid

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def project(self) -> str:
        return self._spec.project

    @property
    def artifact_dir(self) -> str:
        return self._store.artifacts_dir

    @property
    def artifact_path(self) -> str:
        """The artifact folder, under MLRun's name for it."""
        return self._store.artifacts_dir

    @property
    def parameters(self) -> dict[str, Any]:
        """The resolved parameters (every level merged by precedence); a copy."""
        return copy.deepcopy(self._spec.resolved)

    def get_param(self, name: str, default: Any = None) -> Any:
        return self._spec.resolved.get(name, default)

    def get_params(self, level: str) -> dict[str, Any]:
        """The parameters set at one level only, e.g. `pipeline` even where `step` overrides."""
        if level not in LEVELS:
            raise ValueError(f"unknown parameter level {level!r}; the levels are {list(LEVELS)}")
        return copy.deepcopy(self._spec.levels.get(level, {}))

    @property
    def inputs(self) -> dict[str, DataItem]:
        return dict(self._inputs)

    def get_input(self, name: str) -> DataItem:
        try:
            return self._inputs[name]
        except KeyError:
            raise KeyError(
                f"the run has no input named {name!r}; its inputs: {sorted(self._inputs)}"
            ) from None

    @property
    def results(self) -> dict[str, Any]:
        return self._store.results

    def log_result(self, key: str, value: Any) -> None:
        self._store.log_result(key, value)

    def log_results(self, results: Mapping[str, Any]) -> None:
        if not isinstance(results, Mapping):
            raise TypeError(f"log_results takes a dict, not a {type(results).__name__}")
        for key, value in results.items():
            self._store.log_result(key, value)

    def log_artifact(
        self,
        key: str,
        local_path: str | os.PathLike[str] | None = None,
        body: str | bytes | None = None,
        kind: str = "file",
        format: str | None = None,
    ) -> str:
        """Keep a file or folder (`local_path`, relative to the work folder) or `body`.

        Returns the path of the kept copy. Logging a key again replaces it.
        """
        fmt = format.lstrip(".") if format else None
        if body is not None and local_path is None:
            if not isinstance(body, (str, bytes, bytearray, memoryview)):
                raise TypeError(f"log_artifact({key!r}): body must be str or bytes")
            return self._store.store_body(key, body, kind, fmt)
        if local_path is not None and body is None and os.fspath(local_path):
            source = os.path.join(self._spec.paths.work, os.fspath(local_path))
            return self._store.store_file(key, source, kind, fmt)
        raise ValueError(f"log_artifact({key!r}): give exactly one of local_path and body")

    def get_secret(self, name: str, default: str | None = None) -> str | None:
        """A secret this function was given (its `secrets:`), read from its file; else `default`."""
        if name not in self._spec.secrets or self._spec.paths.secrets is None:
            self.logger.warning(f"secret {name!r} was not given to this run: name it in the "
                                "function's `secrets:` (the runner's operator must allow it too)")
            return default
        try:
            with open(os.path.join(self._spec.paths.secrets, name), encoding="utf-8") as handle:
                return handle.read()
        except OSError as exc:
            self.logger.warning(f"secret {name!r} cannot be read: {exc.strerror or exc}")
            return default

    def __repr__(self) -> str:
        return f"RunContext(uid={self.uid!r}, name={self.name!r}, project={self.project!r})"
