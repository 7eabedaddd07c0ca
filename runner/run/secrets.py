"""The secrets a runner hands to runs, and their masking in everything written or shown.

Which environment variables may become secrets is the operator's (runner.project.policy);
which of them a run gets is its function's `secrets:`. Values are masked in
their plain form and in the encodings a handler is likely to print them in.
"""

from __future__ import annotations

import base64
import functools
import json
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Any, TypeVar

from runner.frozen import frozen
from runner.project.model import Function
from runner.project.policy import Policy

MASK = "***"
MIN_PIECE = 6  # a line of a secret, or a part of its base64, shorter than this would hide plain text
_URL_SAFE = str.maketrans("+/", "-_")
T = TypeVar("T")


@frozen
class Secrets:
    """The values of the secrets a run may read, and their masking."""

    values: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def available(cls, names: Iterable[str], policy: Policy, environ: Mapping[str, str]) -> Secrets:
        """The named secrets that the policy allows and the environment holds."""
        return cls({name: environ[name] for name in names
                    if policy.allows_secret(name) and environ.get(name)})

    def for_function(self, function: Function) -> dict[str, str]:
        return {name: value for name, value in self.values.items() if name in function.secrets}

    @functools.cached_property
    def forms(self) -> tuple[str, ...]:
        """Every value in the forms it is masked in, longest first (worked out once: a
        log masks every line, a record every field)."""
        found: set[str] = set()
        for value in self.values.values():
            found |= forms_of(value)
        return tuple(sorted((form for form in found if form), key=lambda form: (-len(form), form)))

    @functools.cached_property
    def _byte_forms(self) -> tuple[bytes, ...]:
        return tuple(form.encode() for form in self.forms)

    @functools.cached_property
    def longest(self) -> int:
        """The bytes of the longest form: a piece of output cut shorter may hold part of one."""
        return max(map(len, self._byte_forms), default=0)

    def mask(self, value: T) -> T:
        """`value` (text, or a structure of mappings and lists) with every secret masked."""
        return _mask(value, self.forms) if self.forms else value

    def mask_bytes(self, data: bytes) -> bytes:
        for form in self._byte_forms:
            data = data.replace(form, MASK.encode())
        return data


def forms_of(value: str) -> set[str]:
    """`value` as a handler may print it: plain, JSON, URL, repr, hex (either case) and
    base64 wherever it stands in what is encoded; and so each line of a value of several
    lines (a private key), which reaches a log, masked line by line, a line at a time.
    The same as runner/runtime/notebook.py's (a test keeps them alike)."""
    found: set[str] = set()
    lines = [line for line in value.splitlines() if len(line) >= MIN_PIECE]
    for piece in dict.fromkeys([value, *lines]):
        encoded = piece.encode()
        found |= {piece, json.dumps(piece)[1:-1], urllib.parse.quote(piece, safe=""),
                  encoded.hex(), encoded.hex().upper(), repr(piece)[1:-1], *_base64_forms(encoded)}
    return {form for form in found if form}


def _base64_forms(data: bytes) -> set[str]:
    """base64 and base64url of `data` at each of the 3 places a byte may take in a group
    of what is encoded (after 0, 1 or 2 other bytes): the characters that come from its
    bytes alone, so they are the same whatever stands before and after it."""
    whole = base64.b64encode(data).decode().rstrip("=")
    found = {whole, whole.translate(_URL_SAFE)}
    for before, skip in ((0, 0), (1, 2), (2, 3)):
        text = base64.b64encode(bytes(before) + data).decode().rstrip("=")
        text = text[skip:len(text) - (1 if (before + len(data)) % 3 else 0)]
        if len(text) >= MIN_PIECE:
            found |= {text, text.translate(_URL_SAFE)}
    return found


def _mask(value: Any, forms: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for form in forms:
            value = value.replace(form, MASK)
        return value
    if isinstance(value, Mapping):
        return {_mask(key, forms): _mask(item, forms) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_mask(item, forms) for item in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        shown = str(value)
        masked = _mask(shown, forms)
        return masked if masked != shown else value
    return value
