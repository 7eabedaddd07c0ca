"""`@frozen`: `@dataclass(frozen=True)` whose equality, hash and repr every class shares.

Python 3.11 compiles each method of a dataclass from source as the class is defined:
six for a frozen one, about 0.45 ms a class, and `runyard run` defines some forty before
its container starts. Three of them need not be compiled for each class, as they only
read the class's fields: `__eq__`, `__hash__` and `__repr__` here do so, with the names
`frozen` notes on the class. They behave as the dataclass ones (fields with `compare=False`
take no part in equality and hash, those with `repr=False` are not shown); what a class
defines itself it keeps. (Python 3.13 compiles a class's methods at once.)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar, cast, dataclass_transform

V = TypeVar("V")

_COMPARED = "__frozen_compared__"
_SHOWN = "__frozen_shown__"


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen(cls: type[V]) -> type[V]:
    made = dataclass(frozen=True, eq=False, repr=False)(cls)
    items = fields(cast(Any, made))
    setattr(made, _COMPARED, tuple(item.name for item in items if item.compare))
    setattr(made, _SHOWN, tuple(item.name for item in items if item.repr))
    for name in ("__eq__", "__hash__", "__repr__"):
        if name not in cls.__dict__:
            setattr(made, name, _Shared.__dict__[name])
    return made


def _values(value: object, names: str) -> tuple[Any, ...]:
    return tuple(getattr(value, name) for name in getattr(value, names))


class _Shared:
    """The methods every @frozen class shares."""

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return _values(self, _COMPARED) == _values(other, _COMPARED)

    def __hash__(self) -> int:
        return hash(_values(self, _COMPARED))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in getattr(self, _SHOWN))
        return f"{type(self).__qualname__}({shown})"
