"""`@frozen` behaves as `@dataclass(frozen=True)`: the shared equality, hash and repr
against the ones dataclasses compiles, field options included."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest

from runner.frozen import frozen


@frozen
class Point:
    x: int
    y: tuple[str, ...] = ()
    note: str = field(default="", compare=False, repr=False)


@frozen
class Labelled(Point):
    label: str = ""


@dataclass(frozen=True)
class StdPoint:
    x: int
    y: tuple[str, ...] = ()
    note: str = field(default="", compare=False, repr=False)


@frozen
class Shown:
    x: int

    def __repr__(self) -> str:
        return f"<{self.x}>"


def _pairs() -> list[tuple[Any, Any]]:
    values = [(1, ()), (1, ("a",)), (2, ("a", "b"))]
    return [(Point(x, y, note="n"), StdPoint(x, y, note="m")) for x, y in values]


def test_equality_and_hash_are_the_dataclass_ones() -> None:
    pairs = _pairs()
    for mine, theirs in pairs:
        assert mine == Point(mine.x, mine.y)  # `note` takes no part
        assert hash(mine) == hash(Point(mine.x, mine.y))
        assert hash(mine) == hash(theirs)  # hashes the same fields, in the same order
        for other, other_std in pairs:
            assert (mine == other) == (theirs == other_std)
    standard: object = StdPoint(1)
    assert Point(1) != standard
    assert Point(1) != Labelled(1)  # another class, even a subclass, is never equal
    assert Labelled(1, label="a") != Labelled(1, label="b")
    assert len({Point(1), Point(1, note="x"), Point(2)}) == 2


def test_repr_is_the_dataclass_one_and_a_class_keeps_its_own() -> None:
    for mine, theirs in _pairs():
        assert repr(mine) == repr(theirs).replace("StdPoint", "Point")
    assert repr(Labelled(1, label="a")) == "Labelled(x=1, y=(), label='a')"
    assert repr(Shown(3)) == "<3>"


def test_it_is_a_frozen_dataclass() -> None:
    point = Point(1, ("a",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 2  # type: ignore[misc]
    assert dataclasses.is_dataclass(point)
    assert dataclasses.replace(point, x=2) == Point(2, ("a",))
    assert dataclasses.asdict(point) == {"x": 1, "y": ("a",), "note": ""}
    assert pickle.loads(pickle.dumps(point)) == point
