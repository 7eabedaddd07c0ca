"""`runyard ui`: the report's pages served from the results branch as it changes.

Read-only: GET only, and only the paths the site has (its pages, assets and kept
artifacts, and two small JSON answers the pages poll: the branch's tip and a running
run's log); any other path is 404, so no request reaches a file by its name. The
pages are made again when the branch moves.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from runner.record.results import ResultsBranch
from runner.views.report import read_snapshot
from runner.views.site import Readers, Site

LOG_CHUNK = 256 * 1024


class Answer(NamedTuple):
    status: int
    kind: str
    body: bytes


NOT_FOUND = Answer(404, "text/plain; charset=utf-8", b"not found\n")


class LiveSite:
    """The site of the branch's newest commit, made again when the branch moves."""

    def __init__(self, results: ResultsBranch, readers: Readers, live_logs: Path | None) -> None:
        self.results = results
        self.readers = readers
        self.live_logs = live_logs
        self.lock = threading.Lock()  # one git reader process: one request reads at a time
        self.site: Site | None = None

    def current(self) -> Site:
        tip = self.results.store.tip()
        if self.site is None or self.site.snapshot.tip != tip:
            self.site = Site(read_snapshot(self.results), self.readers, live=True)
        return self.site

    def answer(self, raw_path: str) -> Answer:
        parts = urlsplit(raw_path)
        path = unquote(parts.path).lstrip("/") or "index.html"
        with self.lock:
            site = self.current()
            if path == "api/tip":
                return _json({"tip": site.snapshot.tip})
            if path.startswith("api/log/"):
                offset = parse_qs(parts.query).get("from", ["0"])[0]
                return self._log(site, path.removeprefix("api/log/"), int(offset) if offset.isdigit() else 0)
            if path.startswith("assets/"):
                asset = site.asset(path.removeprefix("assets/"))
                return NOT_FOUND if asset is None else Answer(200, _kind(path), asset)
            if path.startswith("objects/"):
                stored = site.objects().get(path)
                return NOT_FOUND if stored is None else Answer(200, _kind(path), stored.read_bytes())
            page = site.render(path)
            return NOT_FOUND if page is None else Answer(200, "text/html; charset=utf-8", page)

    def _log(self, site: Site, uid: str, offset: int) -> Answer:
        """A run's log from `offset`: its runner's live copy while it runs, else the recorded one."""
        if uid not in site.by_uid:
            return NOT_FOUND
        live = self.live_logs / f"{uid}.log" if self.live_logs else None
        if live is not None and live.is_file():
            with live.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read(LOG_CHUNK)
        else:
            chunk = self.readers.logs([uid])[0][offset:offset + LOG_CHUNK]
        return _json({"text": chunk.decode("utf-8", errors="replace"), "next": offset + len(chunk)})


def _json(data: object) -> Answer:
    return Answer(200, "application/json", json.dumps(data).encode())


def _kind(path: str) -> str:
    kinds = {"js": "text/javascript", "css": "text/css", "png": "image/png", "jpg": "image/jpeg",
             "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp", "svg": "image/svg+xml"}
    return kinds.get(path.rsplit(".", 1)[-1], "application/octet-stream")


def make_server(live: LiveSite, host: str, port: int) -> ThreadingHTTPServer:
    return ThreadingHTTPServer((host, port), _handler(live.answer))


def _handler(answer: Callable[[str], Answer]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "runyard-ui"

        def do_GET(self) -> None:
            found = answer(self.path)
            self.send_response(found.status)
            self.send_header("Content-Type", found.kind)
            self.send_header("Content-Length", str(len(found.body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(found.body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the pages poll every second

    return Handler
