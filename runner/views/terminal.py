"""Text from a record, made safe for a terminal: shown, never obeyed.

A record holds what a pushed project and its runs wrote (results, params, errors, logs).
A terminal acts on some characters instead of showing them: an escape sequence can move
the cursor, hide or rewrite earlier lines, retitle the window or set the clipboard; a
carriage return or backspace overwrites; a bidirectional override reorders what is
shown. Every view for a terminal writes such characters out (`\\x1b`) instead.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls (U+009B alone starts a sequence on
# many terminals), and the marks, overrides and isolates that reorder text.
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[{_CONTROLS}]")
# A colour (SGR: ESC [ parameters m) is the one sequence a log keeps.
_COLOUR_OR_CONTROL = re.compile(f"\x1b\\[[0-9;:]*m|[{_CONTROLS}]")


def printable(text: str, *, colours: bool = False) -> str:
    """`text` with every character a terminal would obey written out as `\\x1b` is; with
    `colours` (a run's log), its colours kept."""
    return (_COLOUR_OR_CONTROL if colours else _CONTROL).sub(_written_out, text)


def _written_out(found: re.Match[str]) -> str:
    text = found.group()  # one character, or a whole colour (kept)
    return text if len(text) > 1 else text.encode("unicode_escape").decode("ascii")
