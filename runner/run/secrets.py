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
from dataclasses import dataclass, field
from typing import Any, TypeVar

from runner.project.model import Function
from runner.project.policy import Policy

MASK = "***"
T = TypeVar("T")


@dataclass(frozen=True)
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
            encoded = value.encode()
            found |= {value, json.dumps(value)[1:-1], urllib.parse.quote(value, safe=""),
                      base64.b64encode(encoded).decode().rstrip("="), encoded.hex(), repr(value)[1:-1]}
        return tuple(sorted((form for form in found if form), key=len, reverse=True))

    @functools.cached_property
    def _byte_forms(self) -> tuple[bytes, ...]:
        return tuple(form.encode() for form in self.forms)

    def mask(self, value: T) -> T:
        """`value` (text, or a structure of mappings and lists) with every secret masked."""
        return _mask(value, self.forms) if self.forms else value

    def mask_bytes(self, data: bytes) -> bytes:
        for form in self._byte_forms:
            data = data.replace(form, MASK.encode())
        return data


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
