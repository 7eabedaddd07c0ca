"""The one error type a user can cause, and the problems it carries.

Every user-facing failure is a `RunyardError`; the CLI catches it in one place,
prints it without a traceback and exits 1. Anything else is a bug (exit 3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple


class Problem(NamedTuple):
    """One thing wrong with a project file, at a position (1-based)."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return self._asdict()


def did_you_mean(name: str, names: Iterable[str], said: Callable[[str], str] = repr) -> str:
    """`; did you mean NAME?` with the one of `names` nearest to `name` (as `said` writes
    it), or "" when none is near: for a message that names what was not found."""
    import difflib  # only on the error path: not a cost of every command

    near = difflib.get_close_matches(name, sorted(names), n=1)
    return f"; did you mean {said(near[0])}?" if near else ""


class RunyardError(Exception):
    """A user's error: bad input, a failed run asked to fail, a missing engine."""

    def __init__(self, message: str, problems: Iterable[Problem] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.problems = tuple(problems)

    def __str__(self) -> str:
        lines = [str(problem) for problem in self.problems]
        return "\n".join([*lines, self.message])


class ProjectInvalid(RunyardError):
    """The project does not load or does not check; nothing may run."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        problems = sorted(problems)
        files = len({p.file for p in problems})
        noun = "error" if len(problems) == 1 else "errors"
        where = "file" if files == 1 else "files"
        super().__init__(f"{len(problems)} {noun} in {files} {where}", problems)
