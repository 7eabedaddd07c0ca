"""The report's pages from records written by hand on a real git branch: what a record
holds is text, what cannot be read is named and the rest still renders, and the live
server serves the site's paths alone (no file by its name, no writes)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.record.artifacts import ArtifactStore
from runner.record.model import Artifact, Metadata, PushRecord, RunRecord, Spec, Status, TrialSummary
from runner.record.results import ResultsBranch, run_folder
from runner.views.live import LiveSite, make_server
from runner.views.previews import ReadHead, preview, render_markdown
from runner.views.report import Snapshot, overview, read_snapshot, run_page, slug
from runner.views.site import Readers, Site, readers_for
from tests.helpers import git
from tests.helpers.gitops import Remote, fsck_clean, read

BRANCH = "runyard/results"
START = "2026-01-01T00:00:00.000+00:00"


def record(uid: str, job: str = "score", results: dict[str, object] | None = None,
           revision: str = "a" * 40, **status: object) -> RunRecord:
    return RunRecord(Metadata(uid, job, "demo", job=job), Spec(function="f", revision=revision),
                     Status(**{"state": "completed", "start": START, "duration": 1.5,
                               "results": results or {}, **status}))  # type: ignore[arg-type]


@pytest.fixture
def results(tmp_path: Path) -> Iterator[ResultsBranch]:
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    branch = ResultsBranch(repo / ".git", BRANCH)
    yield branch
    branch.close()


def no_object(digest: str) -> Path | None:
    return None


def site_of(results: ResultsBranch, heads: dict[str, bytes] | None = None) -> Site:
    found = heads or {}
    return Site(read_snapshot(results),
                Readers(results.logs, lambda digest, limit: found.get(digest, b"")[:limit] or None,
                        no_object))


def page(site: Site, path: str) -> str:
    rendered = site.render(path)
    assert rendered is not None, f"no page {path}"
    return rendered.decode()


def test_a_result_named_script_is_text_on_every_page(results: ResultsBranch) -> None:
    hostile = "<script>alert(1)</script>"
    results.write(record("0001", job="x<b>y", results={hostile: 1.0, "note": "<img src=x onerror=alert(2)>"},
                         error=hostile), log=hostile.encode())
    site = site_of(results)
    for path in site.pages():
        html = page(site, path)
        assert "<script>alert" not in html and "<img src=x" not in html, path
    run_html = page(site, run_page("0001"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run_html
    assert "&lt;img src=x onerror=alert(2)&gt;" in run_html


def test_a_broken_record_is_named_and_the_report_still_written(results: ResultsBranch,
                                                                tmp_path: Path) -> None:
    results.write(record("0001", results={"accuracy": 0.9}))
    results.store.commit({f"{run_folder('0002')}/run.yaml": b"apiVersion: runyard/v1\nkind: run\nmeta",
                          f"{run_folder('0003')}/run.yaml": b"apiVersion: runyard/v0\nkind: run\n",
                          "pushes/abc/main.yaml": b"[not, a, push]"}, "hand-edited")
    done = subprocess.run([sys.executable, "-m", "runner", "report", "-o", str(tmp_path / "site"),
                           "--branch", BRANCH], cwd=results.store.git_dir.parent,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    for where in (f"{run_folder('0002')}/run.yaml", f"{run_folder('0003')}/run.yaml",
                  "pushes/abc/main.yaml"):
        assert f"could not read {BRANCH}:{where}" in done.stderr
    index = (tmp_path / "site" / "index.html").read_text()
    assert "Records that could not be read" in index
    assert f"{run_folder('0002')}/run.yaml" in index and "of version" in index
    assert (tmp_path / "site" / run_page("0001")).is_file()


def report_into(results: ResultsBranch, output: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runner", "report", "-o", str(output),
                           "--branch", BRANCH], cwd=results.store.git_dir.parent,
                          capture_output=True, text=True, timeout=60)


def test_an_output_folder_that_cannot_be_written_is_a_users_error(results: ResultsBranch,
                                                                   tmp_path: Path) -> None:
    """A file where the folder should be, or in a page's way, is said (exit 1), not a crash."""
    results.write(record("0001", results={"accuracy": 0.9}))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    for output, said in [(a_file, f"cannot write the report to {a_file}: it is a file, not a folder"),
                         (a_file / "site", f"cannot write the report to {a_file / 'site'}: "
                                           "Not a directory")]:
        done = report_into(results, output)
        assert (done.returncode, done.stderr.strip()) == (1, said)
    assert a_file.read_text() == "mine"
    site = tmp_path / "site"
    (site / "index.html").mkdir(parents=True)  # a folder where the overview goes
    done = report_into(results, site)
    assert done.returncode == 1, done.stderr
    assert f"cannot write the report's {site / 'index.html'}: Is a directory" in done.stderr
    assert "internal error" not in done.stderr


def test_a_result_that_is_not_a_number_is_left_out_of_the_chart_and_said(
        results: ResultsBranch) -> None:
    results.write(record("0001", results={"accuracy": 0.8}, start="2026-01-01T00:00:00"))
    results.write(record("0002", results={"accuracy": "high"}, start="2026-01-02T00:00:00"))
    results.write(record("0003", results={"accuracy": float("nan")}, start="2026-01-03T00:00:00"))
    site = site_of(results)
    job = page(site, "job/score.html")
    assert "2 run(s) hold result <code>accuracy</code> as something other than a number" in job
    assert '"points": [["0001"' in job  # the one number charted
    assert "high" in page(site, run_page("0002"))


def test_a_huge_log_shows_its_end_and_says_so(results: ResultsBranch) -> None:
    log = b"".join(b"line %d\n" % n for n in range(600_000))  # about 7 MB
    results.write(record("0001"), log=log)
    html = page(site_of(results), run_page("0001"))
    assert "line 599999" in html and "line 1\n" not in html
    assert f"the first {len(log) - 256 * 1024} bytes of the log are left out" in html
    assert len(html) < 400_000


def test_ten_thousand_trials_in_one_job(results: ResultsBranch) -> None:
    trials = tuple(TrialSummary(n, f"t{n:05d}", "completed", {"lr": n / 10_000, "depth": n % 7},
                                {"accuracy": (n * 7919 % 10_000) / 10_000}) for n in range(1, 10_001))
    best = max(trials, key=lambda t: t.results["accuracy"]).iteration
    parent = record("0001", job="tune", results={"accuracy": 0.9999}, trials=trials,
                    best_iteration=best)
    parent = RunRecord(parent.metadata, Spec(hyper={"selector": "max.accuracy"}, revision="a" * 40),
                       parent.status)
    results.write(parent)
    site = site_of(results)
    html = page(site, run_page("0001"))
    assert html.count('data-iteration="') == 10_000
    assert html.count("★ best") == 1 and f'data-iteration="{best}"' in html
    assert "tune" in page(site, "index.html") and "0001" in page(site, "job/tune.html")
    assert html.count('data-kind="scatter"') == 2


def test_markdown_keeps_raw_html_and_images_as_text() -> None:
    rendered = render_markdown("# T\n<script>x()</script>\n![i](http://example.com/i.png)\n"
                               "[a](javascript:alert(1))")
    assert "<h1>T</h1>" in rendered
    assert "<script>" not in rendered and "<img" not in rendered
    assert 'href="javascript' not in rendered


def test_previews_by_format() -> None:
    def head(data: bytes) -> ReadHead:
        return lambda digest, limit: data[:limit]

    csv = Artifact("table", format="csv", hash="sha256:" + "0" * 64, size=20)
    shown = preview(csv, head(b"a,b\n1,<x>\n2,3\n"))
    assert shown.kind == "csv" and shown.rows == (("a", "b"), ("1", "<x>"), ("2", "3"))
    page_ = Artifact("page", format="html", hash="sha256:" + "0" * 64, size=30)
    framed = preview(page_, head(b"<img src='http://example.com/x'>"))
    assert framed.kind == "html" and framed.text.startswith("<meta http-equiv=\"Content-Security-Policy\"")
    assert preview(Artifact("plot", format="png"), head(b"")).kind == "image"
    missing = Artifact("m", format="json", hash="sha256:" + "1" * 64, size=3)
    assert preview(missing, lambda digest, limit: None).kind == "missing"



def test_page_names_of_hostile_names_stay_in_their_folder() -> None:
    for text in ("../../etc/passwd", ".hidden", "a/b", "", "x" * 300):
        name = slug(text)
        assert "/" not in name and not name.startswith(".") and name and len(name) < 100
    assert slug("train") == "train" and slug("a/b") != slug("a_b")


@pytest.fixture
def server(results: ResultsBranch, tmp_path: Path) -> Iterator[str]:
    results.write(record("0001", results={"accuracy": 0.9}), log=b"hello\n")
    (tmp_path / "secret.txt").write_text("secret")
    live = LiveSite(results, Readers(results.logs, lambda digest, limit: None, no_object), tmp_path)
    httpd = make_server(live, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def status_of(url: str, method: str = "GET") -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_a_running_runs_log_follows_its_runners_copy(results: ResultsBranch, server: str,
                                                     tmp_path: Path) -> None:
    results.write(record("0002", state="running"))
    (tmp_path / "0002.log").write_bytes(b"epoch 1\n")
    assert json.loads(status_of(f"{server}/api/log/0002")[1]) == {"text": "epoch 1\n", "next": 8}
    with (tmp_path / "0002.log").open("ab") as log:
        log.write(b"epoch 2\n")
    assert json.loads(status_of(f"{server}/api/log/0002?from=8")[1]) == {"text": "epoch 2\n", "next": 16}
    assert 'data-state="running"' in status_of(f"{server}/{run_page('0002')}")[1].decode()


def test_the_live_server_serves_its_pages_alone(server: str) -> None:
    assert status_of(f"{server}/")[0] == 200
    assert status_of(f"{server}/{run_page('0001')}")[0] == 200
    assert status_of(f"{server}/api/log/0001")[1] == b'{"text": "hello\\n", "next": 6}'
    for path in ("/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/assets/../../pyproject.toml",
                 "/objects/..%2f..%2fsecret.txt", "/api/log/..%2fsecret", "/api/log/..%2f..%2fsecret.txt",
                 "/run/../../secret.txt", "//etc/passwd", "/secret.txt"):
        code, body = status_of(server + path)
        assert code == 404 and b"secret" not in body and b"root:" not in body, path
    for method in ("POST", "PUT", "DELETE"):
        assert status_of(f"{server}/index.html", method)[0] == 501


def test_the_runner_commits_the_report_with_each_push_record(pushed: Remote) -> None:
    first = pushed.first
    index = read(pushed.bare, "report/index.html") or ""
    assert first["revision"][:12] in index and "completed" in index
    for run in first["runs"]:
        assert f'data-job="{run["job"]}"' in index
        assert read(pushed.bare, f"report/{run_page(run['uid'])}") is not None
    assert read(pushed.bare, "report/assets/plotly.min.js") is not None
    pages = {run["uid"]: _blob(pushed.bare, f"report/{run_page(run['uid'])}") for run in first["runs"]}
    sha = pushed.append("README.md", "\nMore words.\n", "docs only")
    pushed.push("main")
    assert pushed.wait(sha)["status"] == "nothing-to-run"
    # written in the push record's commit: the report never lags the record it shows
    index = read(pushed.bare, "report/index.html") or ""
    assert sha[:12] in index and "did not need it" in index
    # a run's page did not change, so the push stored no new copy of it
    assert {uid: _blob(pushed.bare, f"report/{run_page(uid)}") for uid in pages} == pages
    fsck_clean(pushed.bare)


def _blob(bare: Path, path: str) -> str:
    return git(bare, "rev-parse", f"{BRANCH}:{path}").strip()


def test_a_huge_artifact_is_previewed_by_its_head_and_not_copied(results: ResultsBranch,
                                                                tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"), tmp_path)
    big = tmp_path / "big.txt"
    big.write_bytes(b"".join(b"row %d\n" % n for n in range(500_000)))  # about 4.9 MB
    small = tmp_path / "plot.png"
    small.write_bytes(b"\x89PNG\r\n\x1a\n")
    stored = [store.put(big), store.put(small)]
    artifacts = (Artifact("big", format="txt", hash=stored[0].hash, size=stored[0].size),
                 Artifact("plot", format="png", hash=stored[1].hash, size=stored[1].size))
    results.write(record("0001", artifacts=artifacts))
    site = Site(read_snapshot(results), readers_for(results, store))
    html = page(site, run_page("0001"))
    assert "row 0\n" in html and "row 59" in html and "row 60" not in html
    assert "only the beginning is shown" in html
    assert "runyard runs artifact 0001 big" in html  # not kept: fetched with runyard
    kept = site.objects()
    assert list(kept) == [f"objects/{stored[1].hash.removeprefix('sha256:')}.png"]
    assert f'src="../{next(iter(kept))}"' in html


def test_the_overview_says_whether_each_job_is_up_to_date_with_the_newest_push() -> None:
    old, new = "1" * 40, "2" * 40
    runs = (record("0003", job="skipped", revision=old), record("0002", job="planned", revision=old),
            record("0001", job="ran", revision=new))
    plan = {"jobs": [{"name": "skipped", "runs": False, "reasons": ["nothing it uses changed"]},
                     {"name": "planned", "runs": True, "reasons": ["code changed: src/a.py"]},
                     {"name": "ran", "runs": True, "reasons": ["new job"]}]}
    push = PushRecord(new, old, "refs/heads/main", received=START, status="failed", plan=plan)
    jobs = {job.name: job for job in overview(Snapshot(BRANCH, None, runs, (push,))).jobs}
    assert (jobs["ran"].current, jobs["skipped"].current, jobs["planned"].current) == (True, True, False)
    assert jobs["skipped"].why == f"the newest push {new[:12]} did not need it: nothing it uses changed"
    assert "planned it (code changed: src/a.py) but no run of that revision" in jobs["planned"].why
    by_hand = overview(Snapshot(BRANCH, None, runs, ())).jobs[0]
    assert by_hand.current is None and "started by hand" in by_hand.why
