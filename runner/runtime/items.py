"""DataItem: an input as the handler sees it (MLRun's name and manners)."""

from __future__ import annotations

import importlib
import os

TYPE_CHECKING = False  # typing is not imported at run time: it costs each run's start
if TYPE_CHECKING:
    from typing import IO, Any, overload


_COMPRESSION = (".gz", ".bz2", ".xz", ".zip", ".zst", ".tar")
# suffix -> (pandas reader, default keyword arguments)
_READERS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("read_csv", {}),
    ".tsv": ("read_csv", {"sep": "\t"}),
    ".tab": ("read_csv", {"sep": "\t"}),
    ".txt": ("read_csv", {}),
    ".parquet": ("read_parquet", {}),
    ".pq": ("read_parquet", {}),
    ".json": ("read_json", {}),
    ".jsonl": ("read_json", {"lines": True}),
    ".ndjson": ("read_json", {"lines": True}),
    ".feather": ("read_feather", {}),
    ".xlsx": ("read_excel", {}),
    ".xls": ("read_excel", {}),
    ".pkl": ("read_pickle", {}),
    ".pickle": ("read_pickle", {}),
}


class DataItem:
    """A run input: the URI it was given as (`url`) and the local file the host fetched."""

    def __init__(self, key: str, url: str, path: str, digest: str | None = None) -> None:
        self.key = key
        self.url = url
        self.hash = digest
        self._path = path

    def local_path(self) -> str:
        return self._path

    def local(self) -> str:
        """The local path, under MLRun's name for it."""
        return self._path

    if TYPE_CHECKING:
        @overload
        def get(self, size: int | None = None, offset: int = 0, encoding: None = None) -> bytes: ...

        @overload
        def get(self, size: int | None = None, offset: int = 0, *, encoding: str) -> str: ...

    def get(self, size: int | None = None, offset: int = 0, encoding: str | None = None) -> bytes | str:
        """The content (`size` bytes from `offset`, default all), decoded if `encoding`."""
        with self.open("rb") as handle:
            handle.seek(offset)
            data: bytes = handle.read(-1 if size is None else size)
        return data if encoding is None else data.decode(encoding)

    def open(self, mode: str = "rb") -> IO[Any]:
        if any(flag in mode for flag in "wax+"):
            raise ValueError(f"input {self.key!r} is read-only; open it with mode 'r' or 'rb'")
        try:
            return open(self._path, mode)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"input {self.key!r} ({self.url}): its local file {self._path} is missing"
            ) from exc

    def as_df(self, **kwargs: Any) -> Any:
        """The input as a pandas DataFrame, read by its suffix (CSV when there is none)."""
        try:
            pandas = importlib.import_module("pandas")
        except ImportError as exc:
            raise ImportError(
                f"input {self.key!r}: as_df() needs pandas, which this function's environment "
                "does not have; add pandas to the function's requirements"
            ) from exc
        reader, defaults = _reader_for(self._path, self.url)
        return getattr(pandas, reader)(self._path, **{**defaults, **kwargs})

    def __fspath__(self) -> str:
        return self._path

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"DataItem(key={self.key!r}, url={self.url!r}, path={self._path!r})"


def _reader_for(path: str, url: str) -> tuple[str, dict[str, Any]]:
    """The reader for the file's suffix, else the URL's (fetched files may have none)."""
    for name in (path, url.split("?", 1)[0]):
        suffix = _data_suffix(name)
        if suffix in _READERS:
            return _READERS[suffix]
    return _READERS[".csv"]


def _data_suffix(name: str) -> str:
    stem, suffix = os.path.splitext(os.path.basename(name).lower())
    if suffix in _COMPRESSION:
        suffix = os.path.splitext(stem)[1]
    return suffix
