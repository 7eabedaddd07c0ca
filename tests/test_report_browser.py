"""The report and the live view in a real browser (Debian's chromium, driven by Playwright)
on records of real runs of the sample project in Docker: every page renders with no
console error and no request leaving the site, the tune job's trials and charts, the
pipeline's steps, an image artifact, and a run that lands while the live view is open."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect, sync_playwright

from runner.record.artifacts import ArtifactStore
from runner.record.model import Artifact, Metadata, RunRecord, Spec, Status
from runner.record.results import ResultsBranch
from runner.views.report import job_page, read_snapshot, run_page
from runner.views.site import Site, readers_for, write_site
from tests.helpers import SAMPLE_PROJECT, commit_all, copy_project, git, make_repo

CHROMIUM = "/usr/bin/chromium"  # Debian's (scripts/bootstrap installs it); never a download


def runyard(*args: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"runyard {args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


class Sample(NamedTuple):
    repo: Path
    site: Path
    tune: dict[str, Any]
    train: dict[str, Any]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    """The sample's train and tune jobs run once in Docker, and the report of their records."""
    repo = copy_project(SAMPLE_PROJECT, tmp_path_factory.mktemp("report") / "sample")
    make_repo(repo)
    commit_all(repo, "the sample project")
    train = json.loads(runyard("run", "train", "--json", cwd=repo).stdout)
    tune = json.loads(runyard("run", "tune", "--json", cwd=repo).stdout)
    site = repo.parent / "site"
    runyard("report", "-o", site, cwd=repo)
    return Sample(repo, site, tune, train)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Watched(NamedTuple):
    page: Page
    errors: list[str]
    outside: list[str]


def watched(browser: Browser, inside: str) -> Watched:
    """A page that notes console errors and every request outside `inside` (a URL prefix)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    outside: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    def request(sent: Request) -> None:
        if not (sent.url.startswith(inside) or sent.url.startswith(("data:", "blob:", "about:"))):
            outside.append(sent.url)

    page.on("console", console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", request)
    return Watched(page, errors, outside)


@pytest.mark.docker
def test_every_page_renders_without_errors_or_outside_requests(sample: Sample, browser: Browser) -> None:
    root = sample.site.as_uri() + "/"
    pages = sorted(str(path.relative_to(sample.site)) for path in sample.site.rglob("*.html"))
    assert len(pages) >= 1 + 2 + 1 + len(sample.tune["status"]["trials"]) * 5  # runs, jobs, index
    seen = watched(browser, root)
    for path in pages:
        seen.page.goto(root + path)
        seen.page.wait_for_load_state("load")
        assert seen.page.locator("main > h1").count() >= 1, path
        assert not seen.errors, f"{path}: {seen.errors}"
    assert not seen.outside


@pytest.mark.docker
def test_the_tune_job_shows_its_trials_the_best_marked_and_charts(sample: Sample, browser: Browser) -> None:
    root = sample.site.as_uri() + "/"
    seen = watched(browser, root)
    seen.page.goto(root + job_page("tune"))
    uid = sample.tune["metadata"]["uid"]
    assert seen.page.locator(f'tr[data-uid="{uid}"]').count() == 1
    seen.page.wait_for_selector(".chart.history .main-svg")  # plotly drew the history
    seen.page.goto(root + run_page(uid))
    trials = sample.tune["status"]["trials"]
    rows = seen.page.locator("table.trials tbody tr[data-iteration]")
    assert rows.count() == len(trials) == 5
    best = seen.page.locator("table.trials tr.best")
    assert best.count() == 1
    assert best.get_attribute("data-iteration") == str(sample.tune["status"]["best_iteration"])
    assert "best" in best.inner_text()
    assert seen.page.locator("tr.excluded").count() == 1  # {lr: 0.05, depth: 5}
    seen.page.wait_for_selector(".chart.parcoords .main-svg")
    assert seen.page.locator(".chart.parcoords").inner_text().find("WebGL is not supported") < 0
    assert seen.page.locator(".chart.scatter.js-plotly-plot").count() == 2  # lr and depth
    header = seen.page.locator("table.trials thead th").filter(has_text="accuracy").first
    column = header.evaluate("th => th.cellIndex")
    cells = f"table.trials tbody tr[data-iteration] td:nth-child({column + 1})"
    header.click()
    ascending = [float(text) for text in seen.page.locator(cells).all_inner_texts()]
    assert ascending == sorted(ascending)
    header.click()
    assert seen.page.locator("table.trials tbody tr").first.get_attribute("class") == "best trial-completed"
    assert not seen.errors and not seen.outside


@pytest.mark.docker
def test_the_pipeline_shows_every_step_and_a_click_opens_it(sample: Sample, browser: Browser) -> None:
    root = sample.site.as_uri() + "/"
    trial = sample.tune["status"]["trials"][0]
    seen = watched(browser, root)
    seen.page.goto(root + run_page(trial["uid"]))
    steps = seen.page.locator("svg.dag a.step")
    assert [steps.nth(i).get_attribute("data-step") for i in range(steps.count())] == \
        ["prep", "train", "evaluate", "report"]
    for name in ("prep", "train", "evaluate", "report"):
        assert "completed" in (seen.page.locator(f'a.step[data-step="{name}"]').text_content() or "")
    labels = seen.page.locator("svg.dag g.edge-data text").all_text_contents()
    assert sorted(labels) == ["metrics", "model", "test_set", "train_set"]
    assert seen.page.locator('svg.dag g.edge-after[data-from="train"][data-to="evaluate"]').count() == 1
    assert seen.page.locator('section.artifact[data-key="report"] .markdown h1').inner_text() == "Churn model"
    seen.page.locator('a.step[data-step="evaluate"]').click()
    seen.page.wait_for_load_state("load")
    assert "evaluate" in seen.page.locator("main > h1").inner_text()
    image = seen.page.locator('section.artifact[data-key="confusion"] img.preview')
    assert image.evaluate("img => img.complete && img.naturalWidth") == 96  # the 2x2 heatmap
    assert seen.page.locator('section.artifact[data-key="metrics"] pre').inner_text().startswith("{")
    assert not seen.errors and not seen.outside


@pytest.mark.docker
def test_the_live_view_shows_a_run_that_lands_while_it_is_open(sample: Sample, browser: Browser) -> None:
    server = subprocess.Popen([sys.executable, "-m", "runner", "ui", "--port", "0"], cwd=sample.repo,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        found = re.search(r"http://127\.0\.0\.1:\d+/", server.stderr.readline())
        assert found, "runyard ui said no address"
        base = found.group(0)
        seen = watched(browser, base)
        seen.page.goto(base)
        runs = seen.page.locator('tr[data-job="train"] td:nth-child(6)')
        assert runs.inner_text() == "1"
        landed = json.loads(runyard("run", "train", "-p", "lr=0.3", "--json", cwd=sample.repo).stdout)
        expect(runs).to_have_text("2", timeout=30_000)  # retried across the page's reloads
        newest = seen.page.locator('tr[data-job="train"] td:nth-child(2) code')
        expect(newest).to_have_text(re.compile(r"\w+"))
        assert landed["metadata"]["uid"].startswith(newest.inner_text())
        assert not seen.errors and not seen.outside
        opened = watched(browser, base)  # the first page may be reloading as the branch moves
        opened.page.goto(base + run_page(landed["metadata"]["uid"]))
        assert "lr=0.3" in opened.page.locator("table.params").inner_text()
        assert not opened.errors and not opened.outside
    finally:
        server.terminate()
        server.wait(timeout=10)


class Listener:
    """An HTTP server on this machine that notes every request it gets: the outside world."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def outside() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


def test_hostile_artifacts_load_nothing_and_run_nothing(tmp_path: Path, browser: Browser,
                                                        outside: Listener) -> None:
    """An HTML artifact's page (in a sandboxed frame) and a Markdown one may point anywhere:
    nothing is fetched (the server they point at hears nothing), no script runs, and a
    record's `<script>` is text."""
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", str(repo))
    store = ArtifactStore(str(tmp_path / "store"), tmp_path)
    there = outside.url
    hostile = {"page.html": f"<h1 id=t>framed</h1><img src='{there}/frame.png'>"
                            f"<link rel=stylesheet href='{there}/frame.css'>"
                            f"<script>fetch('{there}/script');parent.document.title='owned'</script>",
               "notes.md": f"# Notes\n![x]({there}/md.png)\n<img src='{there}/raw.png'>\n"}
    artifacts = []
    for name, text in hostile.items():
        (tmp_path / name).write_text(text)
        stored = store.put(tmp_path / name)
        artifacts.append(Artifact(name.split(".")[0], format=name.split(".")[1], hash=stored.hash,
                                  size=stored.size))
    results = ResultsBranch(repo / ".git", "runyard/results")
    results.write(RunRecord(Metadata("0001", "<script>document.title='owned'</script>", "demo", job="j"),
                            Spec(function="f", revision="a" * 40),
                            Status("completed", artifacts=tuple(artifacts),
                                   results={"<script>document.title='owned'</script>": 1})))
    site = tmp_path / "site"
    write_site(Site(read_snapshot(results), readers_for(results, store)), site)
    results.close()
    seen = watched(browser, site.as_uri() + "/")
    blocked: list[str] = []
    seen.page.on("requestfailed", lambda failed: blocked.append(failed.url))
    seen.page.goto(site.as_uri() + "/" + run_page("0001"))
    frame = seen.page.frame_locator('section.artifact[data-key="page"] iframe')
    assert frame.locator("#t").inner_text() == "framed"
    assert seen.page.locator('section.artifact[data-key="notes"] .markdown h1').inner_text() == "Notes"
    seen.page.wait_for_timeout(1000)
    assert seen.page.evaluate("document.title") != "owned"
    assert "<script>document.title='owned'</script>" in seen.page.locator("main > h1").inner_text()
    # Chromium may announce a load the frame's policy then stops: it must never get out
    assert outside.hits == [] and set(seen.outside) <= set(blocked)


@pytest.mark.docker
def test_compare_shows_the_picked_runs_side_by_side(sample: Sample, browser: Browser) -> None:
    root = sample.site.as_uri() + "/"
    seen = watched(browser, root)
    seen.page.goto(root + run_page(sample.tune["metadata"]["uid"]))
    seen.page.get_by_text("Compare the best trials").click()
    seen.page.wait_for_load_state("load")
    table = seen.page.locator("table.compare")
    assert table.locator("thead th.col").count() == 5
    assert table.locator("tr.differ").filter(has_text="param lr").count() == 1
    assert table.locator("tr.same").filter(has_text="param epochs").count() == 1
    images = table.locator('tr.images img[alt="confusion"]')
    assert images.count() == 5
    assert all(images.nth(i).evaluate("img => img.naturalWidth") == 96 for i in range(5))
    trials = sample.tune["status"]["trials"]
    picked = [trials[0]["uid"], trials[1]["uid"]]  # lr 0.05, depth 2 and 3
    seen.page.goto(seen.page.url.split("#")[0] + "#" + ",".join(picked))
    assert table.locator("thead th.col:not(.hidden)").count() == 2
    assert table.locator("tr.same").filter(has_text="param lr").count() == 1  # the same lr now
    assert table.locator("tr.differ").filter(has_text="param depth").count() == 1
    assert not seen.errors and not seen.outside


def test_the_live_view_follows_a_running_runs_log(tmp_path: Path, browser: Browser) -> None:
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", str(repo))
    results = ResultsBranch(repo / ".git", "runyard/results")
    results.write(RunRecord(Metadata("0001", "train", "demo", job="train"),
                            Spec(function="f", revision="a" * 40),
                            Status("running", start="2026-01-01T00:00:00.000+00:00")))
    results.close()
    live = repo / ".runyard" / "live"
    live.mkdir(parents=True)
    (live / "0001.log").write_text("epoch 1\n")
    server = subprocess.Popen([sys.executable, "-m", "runner", "ui", "--port", "0",
                               "--branch", "runyard/results"], cwd=repo, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        found = re.search(r"http://127\.0\.0\.1:\d+/", server.stderr.readline())
        assert found, "runyard ui said no address"
        seen = watched(browser, found.group(0))
        seen.page.goto(found.group(0) + run_page("0001"))
        log = seen.page.locator("#log")
        seen.page.wait_for_function("() => document.getElementById('log').textContent === 'epoch 1\\n'")
        with (live / "0001.log").open("a") as handle:
            handle.write("epoch 2\n")
        seen.page.wait_for_function(
            "() => document.getElementById('log').textContent === 'epoch 1\\nepoch 2\\n'")
        assert log.get_attribute("data-state") == "running"
        assert not seen.errors and not seen.outside
    finally:
        server.terminate()
        server.wait(timeout=10)
