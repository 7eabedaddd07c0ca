"""What a project hands to Docker, pip, apt and git, and the URIs of its inputs: one rule
each, as a function saying what is wrong with a value (None when nothing is).

The checks call these rules, and so does the Dockerfile renderer, again, before it
writes anything. A rule a regular expression can state is also a `pattern` of the
JSON schemas (the same text, a test keeps them equal), so editors and the schema
alone see it; `compile_pattern` reads such a pattern as JSON Schema means it.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator

_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F0-9:]+\])"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
# The distribution reference grammar: [HOST[:PORT]/]PATH[:TAG][@sha256:DIGEST].
IMAGE_PATTERN = (rf"^(?:{_HOST}(?::[0-9]+)?/)?{_PATH_PART}(?:/{_PATH_PART})*"
                 r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$")
IMAGE_NAME_MAX = 255
PACKAGE_PATTERN = r"^[a-z0-9][a-z0-9+.-]+(?:=[A-Za-z0-9.+~:-]+)?$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
ENV_VALUE_PATTERN = r"^[^\u0000]*$"
# What the schema can say of a requirement: neither a pip option nor a control character.
REQUIREMENT_PATTERN = r"^[A-Za-z0-9][^\u0000-\u001f\u007f]*$"
# The runtime's rule for artifact keys (runner/runtime/outputs.py, which imports nothing of ours).
ARTIFACT_KEY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$"
# A folder every swarm node mounts (execution.shared): absolute, no `.` or `..`, plain names.
SHARED_PATH_PATTERN = r"^(?!.*/\.\.?(?:/|$))(?:/[A-Za-z0-9_.+@=-]+)+/?$"

INPUT_SCHEMES = ("artifact", "store", "step", "file", "http", "https")
_REQUIREMENT_COMMENT = re.compile(r"(^|\s+)#.*$")  # as pip strips comments from a line
_BRANCH_BAD_CHARS = frozenset(" ~^:?*[\\\x7f") | {chr(code) for code in range(0x20)}


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A JSON Schema (ECMA-262) pattern as a Python regular expression that means the same.

    In ECMA-262 `$` matches only at the very end and `\\d`, `\\w` are ASCII; in Python `$`
    also matches before a final newline, so `name\\n` would pass `^[a-z]+$`.
    """
    out: list[str] = []
    escaped = in_class = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "$" and not in_class:
            char = r"\Z"
        out.append(char)
    return re.compile("".join(out), re.ASCII)


_IMAGE = compile_pattern(IMAGE_PATTERN)
_PACKAGE = compile_pattern(PACKAGE_PATTERN)
_ENV_NAME = compile_pattern(ENV_NAME_PATTERN)
_ENV_VALUE = compile_pattern(ENV_VALUE_PATTERN)
_REQUIREMENT = compile_pattern(REQUIREMENT_PATTERN)
_ARTIFACT_KEY = compile_pattern(ARTIFACT_KEY_PATTERN)
_SHARED_PATH = compile_pattern(SHARED_PATH_PATTERN)
_STORE_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_UID = re.compile(r"[0-9a-f]+")


def image_problem(image: str) -> str | None:
    """What is wrong with a Docker image reference, or None."""
    if not _IMAGE.search(image):
        return (f"{image!r} is not a valid image reference: [HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST], "
                "the name in lower case, without spaces")
    name = image.partition("@")[0]
    head, slash, last = name.rpartition("/")
    name = head + slash + last.partition(":")[0]
    if len(name) > IMAGE_NAME_MAX:
        return f"image name {name[:40]!r}... is longer than {IMAGE_NAME_MAX} characters"
    return None


def package_problem(package: str) -> str | None:
    """What is wrong with a Debian package name (optionally `NAME=VERSION`), or None."""
    if _PACKAGE.search(package):
        return None
    return (f"{package!r} is not a Debian package name: lower-case letters, digits, '+', '-' and '.', "
            "at least two characters, optionally =VERSION")


def env_name_problem(name: str) -> str | None:
    if _ENV_NAME.search(name):
        return None
    return f"{name!r} is not a valid environment variable name: letters, digits and '_', " \
           "not starting with a digit"


def env_value_problem(value: str) -> str | None:
    return None if _ENV_VALUE.search(value) else "an environment value cannot hold a NUL character"


def shared_path_problem(path: str) -> str | None:
    """What is wrong with the folder every swarm node mounts (execution.shared), or None."""
    if _SHARED_PATH.search(path):
        return None
    return (f"{path!r} is not a folder every node can mount at the same path: an absolute "
            "path (/mnt/runyard) of plain names (letters, digits and _.+@=-), no `.` or `..`")


def requirement_problem(requirement: str) -> str | None:
    """What is wrong with a pip requirement: it must be PEP 508, not an option (`-e .`)."""
    if requirement.startswith("-"):
        return f"{requirement!r} is a pip option, not a requirement; only PEP 508 requirements are allowed"
    if not _REQUIREMENT.search(requirement):
        return f"{requirement!r} is not a requirement: it holds a line break or a control character"
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(requirement)
    except InvalidRequirement as error:
        return f"{requirement!r} is not a PEP 508 requirement: {str(error).splitlines()[0]}"
    return None


def requirement_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, requirement) of each line of a requirements file that is one:
    blank lines and comments are left out, and comments at the end of a line cut off."""
    for number, line in enumerate(text.splitlines(), 1):
        requirement = _REQUIREMENT_COMMENT.sub("", line).strip()
        if requirement:
            yield number, requirement


def branch_problem(name: str) -> str | None:
    """What is wrong with a git branch name, by the rules of `git check-ref-format --branch`."""
    why = _branch_rule(name)
    return f"{name!r} is not a valid git branch name: {why}" if why else None


def _branch_rule(name: str) -> str | None:
    bad = next((char for char in name if char in _BRANCH_BAD_CHARS), None)
    rules = (
        (not name, "it is empty"),
        (name.startswith("-"), "it starts with '-'"),
        (name == "HEAD", "'HEAD' is reserved"),
        (bad is not None, f"it contains {bad!r}"),
        (".." in name, "it contains '..'"),
        ("@{" in name, "it contains '@{'"),
        (name.startswith("/") or name.endswith("/") or "//" in name,
         "it has an empty component ('/' at either end, or '//')"),
        (name.endswith("."), "it ends with '.'"),
        (any(part.startswith(".") for part in name.split("/")), "a component starts with '.'"),
        (any(part.endswith(".lock") for part in name.split("/")), "a component ends with '.lock'"),
    )
    return next((why for broken, why in rules if broken), None)


def input_uri_problem(uri: str) -> str | None:
    """What is wrong with an input given as a URI (`SCHEME://...`), or None."""
    scheme, _, rest = uri.partition("://")
    if scheme not in INPUT_SCHEMES:
        known = ", ".join(f"{name}://" for name in INPUT_SCHEMES)
        return f"{uri!r}: runyard cannot read {scheme}:// inputs (it reads {known})"
    if any(ord(char) < 0x20 or char == "\x7f" for char in uri):
        return f"{uri!r} holds a line break or a control character"
    if not rest:
        return f"{uri!r} is empty: name something after {scheme}://"
    return _SCHEME_RULES[scheme](uri, rest)


def _file_rule(uri: str, rest: str) -> str | None:
    if rest.startswith("/"):
        return None
    return f"{uri!r}: file:// must be followed by an absolute path, as in file:///data/input.csv"


def _store_rule(uri: str, rest: str) -> str | None:
    if _STORE_HASH.fullmatch(rest):
        return None
    return f"{uri!r}: store:// takes a content hash, 'sha256:' and 64 lower-case hex digits"


def _artifact_rule(uri: str, rest: str) -> str | None:
    key, at, uid = rest.partition("@")
    if not _ARTIFACT_KEY.search(key):
        return (f"{uri!r}: {key!r} is not an artifact key (letters, digits, '_', '.' and '-', "
                "not starting with '.' or '-')")
    if at and not _UID.fullmatch(uid):
        return f"{uri!r}: after '@' comes the uid of a run (hex digits), not {uid!r}"
    return None


def _url_rule(uri: str, rest: str) -> str | None:
    if " " in uri:
        return f"{uri!r}: a URL cannot hold spaces (write them as %20)"
    try:
        host = urllib.parse.urlsplit(uri).hostname
    except ValueError as error:
        return f"{uri!r} is not a valid URL: {error}"
    return None if host else f"{uri!r} names no host"


def _step_rule(uri: str, rest: str) -> str | None:
    if rest.startswith("/"):
        return f"{uri!r} names no step: write step://STEP/OUTPUT"
    return None


_SCHEME_RULES = {"file": _file_rule, "store": _store_rule, "artifact": _artifact_rule,
                 "http": _url_rule, "https": _url_rule, "step": _step_rule}
