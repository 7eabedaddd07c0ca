"""The rules of what reaches Docker, pip, apt and git (runner/refs.py), and their
patterns in the JSON schemas."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runner.project import refs
from runner.runtime import outputs

SCHEMAS = Path(__file__).parents[1] / "schemas"


def schema(kind: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{kind}.schema.json").read_text("utf-8"))
    return loaded


def test_the_schemas_state_the_same_patterns() -> None:
    function, project = schema("function"), schema("project")
    environment = function["properties"]["environment"]["properties"]
    assert environment["base_image"]["pattern"] == refs.IMAGE_PATTERN
    assert project["properties"]["defaults"]["properties"]["base_image"]["pattern"] == refs.IMAGE_PATTERN
    assert environment["requirements"]["items"]["pattern"] == refs.REQUIREMENT_PATTERN
    assert environment["system_packages"]["items"]["pattern"] == refs.PACKAGE_PATTERN
    for env in (function["$defs"]["env"], project["$defs"]["env"]):
        assert env["propertyNames"]["pattern"] == refs.ENV_NAME_PATTERN
        assert env["additionalProperties"]["pattern"] == refs.ENV_VALUE_PATTERN
    assert function["properties"]["secrets"]["items"]["pattern"] == refs.ENV_NAME_PATTERN
    assert project["properties"]["execution"]["properties"]["shared"]["pattern"] == \
        refs.SHARED_PATH_PATTERN


@pytest.mark.parametrize("path", ["/mnt/runyard", "/mnt/runyard/", "/srv/a.b/c_d-e", "/x"])
def test_valid_shared_folders(path: str) -> None:
    assert refs.shared_path_problem(path) is None


@pytest.mark.parametrize("path", ["", "/", "mnt/runyard", "/mnt/../etc", "/mnt/..", "/./x",
                                  "/mnt//x", "/a b", "/mnt/x\n", "~/x", "/mnt/\u00e9"])
def test_bad_shared_folders(path: str) -> None:
    assert "is not a folder every node can mount" in (refs.shared_path_problem(path) or "")


def test_artifact_keys_follow_the_runtime_rule() -> None:
    assert outputs._ARTIFACT_KEY.pattern == refs.ARTIFACT_KEY_PATTERN


def test_a_pattern_ends_where_the_text_does() -> None:
    pattern = refs.compile_pattern("^[a-z]+$")
    assert pattern.search("abc") and not pattern.search("abc\n")
    assert refs.compile_pattern("^[$]$").search("$")
    assert not refs.compile_pattern(r"^\d$").search("\u0663")  # ASCII digits, as in ECMA-262


@pytest.mark.parametrize("image", [
    "python:3.11-slim", "rocker/r-ver:4.4.1", "pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime",
    "localhost:5000/team/image", "Registry.Example.com:443/a/b_c__d-e:v1", "[::1]:5000/x",
    f"python@sha256:{'a' * 64}", f"python:3.11@sha256:{'0' * 64}",
])
def test_valid_image_references(image: str) -> None:
    assert refs.image_problem(image) is None


@pytest.mark.parametrize("image", [
    "Python:3.11", "python:3.11\nADD http://127.0.0.1/x /", "python 3", "python:3.11 ", "",
    "python:", "python@sha256:abc", "-python", "a//b", "python:3.11\n", f"{'a' * 256}:1",
    "python:-3", "a/B", "a..b", f"python@md5:{'a' * 32}",
])
def test_invalid_image_references(image: str) -> None:
    assert refs.image_problem(image) is not None


@pytest.mark.parametrize(("package", "valid"), [
    ("libgomp1", True), ("g++", True), ("libc6=2.36-9+deb12u4", True), ("python3.11", True),
    ("a", False), ("Lib", False), ("-x", False), ("x y", False), ("libgomp1\n", False),
    ("curl=", False), ("curl=1 2", False), ("curl;rm", False),
])
def test_debian_package_names(package: str, valid: bool) -> None:
    assert (refs.package_problem(package) is None) is valid


@pytest.mark.parametrize(("requirement", "valid"), [
    ("scikit-learn==1.5.2", True), ("numpy>=1,<2", True), ('tomli; python_version < "3.11"', True),
    ("pkg @ https://example.com/pkg-1.0-py3-none-any.whl", True), ("requests[socks]", True),
    ("-e .", False), ("--index-url https://evil.example/simple", False), ("-r other.txt", False),
    ("numpy\n--extra-index-url x", False), ("numpy==", False), ("numpy ~= ", False),
    ("a b", False), ("numpy\t", False),
])
def test_requirements(requirement: str, valid: bool) -> None:
    assert (refs.requirement_problem(requirement) is None) is valid


def test_requirement_lines_leave_out_comments_and_blank_lines() -> None:
    text = "# pinned\n\nnumpy==2.0  # why\n  -r more.txt\nscipy\n"
    assert list(refs.requirement_lines(text)) == [(3, "numpy==2.0"), (4, "-r more.txt"), (5, "scipy")]


@pytest.mark.parametrize(("name", "valid"), [
    ("OMP_NUM_THREADS", True), ("_x", True), ("1X", False), ("A-B", False), ("A\n", False), ("", False),
])
def test_environment_names(name: str, valid: bool) -> None:
    assert (refs.env_name_problem(name) is None) is valid


def test_environment_values_hold_no_nul() -> None:
    assert refs.env_value_problem("a\nb") is None
    assert refs.env_value_problem("a\0b") is not None


BRANCHES = [
    "main", "runyard/results", "release/2026-q1", "feature/a.b", "x@y", "ünïcode", "a-", "-", "a/-b",
    "-main", "HEAD", "@", "a..b", "a/.b", ".a", "a.lock", "a/b.lock/c", "a b", "a\tb", "a\n", "a~1",
    "a^", "a:b", "a?", "a*", "a[b", "a\\b", "a@{1}", "/a", "a/", "a//b", "a.", "", "a\x7fb",
]


@pytest.mark.parametrize("name", BRANCHES)
def test_branch_names_follow_git_check_ref_format(name: str, tmp_path: Path) -> None:
    done = subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True, cwd=tmp_path)
    assert (refs.branch_problem(name) is None) is (done.returncode == 0), done.stderr


@pytest.mark.parametrize(("uri", "valid"), [
    ("artifact://model", True), ("artifact://model@4f2a9c1e", True), ("store://sha256:" + "a" * 64, True),
    ("step://prep/data", True), ("file:///data/x.csv", True), ("https://example.com/x.csv", True),
    ("http://example.com:8080/a?b=c", True),
    ("artifact://", False), ("artifact://model@", False), ("artifact://../x", False),
    ("store://", False), ("store://sha256:../../etc", False), ("store://" + "a" * 64, False),
    ("step://", False), ("step:///out", False), ("https://", False), ("http://", False),
    ("https:///x", False), ("https://a b", False), ("file://", False), ("file://data/x.csv", False),
    ("ftp://example.com/x", False), ("s3://bucket/key", False), ("https://x/\ny", False),
    ("http://[::1/x", False),
])
def test_input_uris(uri: str, valid: bool) -> None:
    assert (refs.input_uri_problem(uri) is None) is valid
