"""What the report shows of an artifact: an image inline, the first rows of a CSV, JSON
pretty-printed, Markdown rendered (its HTML left as text), an HTML page for a sandboxed
frame, or the head of a text. An artifact's bytes are hostile: nothing here trusts them
beyond the Markdown renderer, whose raw HTML is off and whose links are checked."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from typing import Literal, NamedTuple

from markdown_it import MarkdownIt

from runner.record.model import Artifact

HEAD_BYTES = 64 * 1024  # read of an artifact to preview it
CSV_ROWS = 20
TEXT_LINES = 60

IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
               "webp": "image/webp", "svg": "image/svg+xml"}
# first in a page shown in a frame: it loads nothing (a sandbox alone would let it fetch)
SHUT_IN = ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
           "style-src 'unsafe-inline'; img-src data:\">")
Kind = Literal["image", "csv", "json", "markdown", "html", "text", "binary", "missing"]

ReadHead = Callable[[str, int], "bytes | None"]
"""(content hash, at most how many bytes) -> the artifact's first bytes, None when not stored."""


class Preview(NamedTuple):
    kind: Kind
    text: str = ""  # json, text, html (for srcdoc), markdown (rendered, safe)
    rows: tuple[tuple[str, ...], ...] = ()  # csv: the header first
    truncated: bool = False
    note: str = ""


def file_type(artifact: Artifact) -> str:
    """The artifact's format as a lower-case extension: its `format`, its kind or its uri's."""
    for guess in (artifact.format, artifact.kind, (artifact.uri or "").rsplit(".", 1)[-1]):
        if guess and guess.lower() in (*IMAGE_TYPES, "csv", "json", "md", "markdown", "html", "htm",
                                       "txt", "text", "log"):
            return guess.lower()
    return (artifact.format or "").lower()


def preview(artifact: Artifact, read_head: ReadHead) -> Preview:
    kind = file_type(artifact)
    if kind in IMAGE_TYPES:
        return Preview("image")
    data = read_head(artifact.hash, HEAD_BYTES) if artifact.hash else None
    if data is None:
        return Preview("missing", note="not in this runner's artifact store")
    truncated = artifact.size is not None and artifact.size > len(data)
    if b"\0" in data[:1024]:
        return Preview("binary", note=f"{artifact.size} bytes of binary data", truncated=truncated)
    text = data.decode("utf-8", errors="replace")
    if kind == "csv":
        return _csv(text, truncated)
    if kind == "json" and not truncated:
        return _json(text)
    if kind in ("md", "markdown"):
        return Preview("markdown", render_markdown(text), truncated=truncated)
    if kind in ("html", "htm"):
        return Preview("html", SHUT_IN + text, truncated=truncated)
    return _text(text, truncated)


def _csv(text: str, truncated: bool) -> Preview:
    lines = text.splitlines()[:CSV_ROWS + 1]
    rows = tuple(tuple(row) for row in csv.reader(lines))
    return Preview("csv", rows=rows, truncated=truncated or len(text.splitlines()) > len(lines))


def _json(text: str) -> Preview:
    try:
        return Preview("json", json.dumps(json.loads(text), indent=2, ensure_ascii=False))
    except ValueError:
        return _text(text, False, note="not valid JSON; shown as text")


def _text(text: str, truncated: bool, note: str = "") -> Preview:
    lines = text.splitlines()
    return Preview("text", "\n".join(lines[:TEXT_LINES]),
                   truncated=truncated or len(lines) > TEXT_LINES, note=note)


def render_markdown(text: str) -> str:
    """Markdown as HTML; raw HTML in it stays text (escaped), unsafe link schemes are dropped,
    and images stay text: an image would load from wherever it points."""
    rendered: str = MarkdownIt("commonmark", {"html": False}).disable("image").render(text)
    return rendered
