"""The `stop_condition` language: comparisons of result names with constants.

    accuracy >= 0.95 and (loss < 0.1 or not converged == false)

A name (`accuracy`, `metrics.acc`) is compared with a number or true/false, on
either side of `< <= > >= == !=`; `not` binds tightest, then `and`, then `or`.
The text is tokenized and parsed by hand, never passed to `eval`. Evaluation
never raises: a comparison whose name is missing from the results, or whose
result is not of the constant's kind (number or true/false), is false.
"""

from __future__ import annotations

import math
import numbers
import operator
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from runner.frozen import frozen

MAX_DEPTH: Final = 100
# Trees deeper than this would hit Python's recursion limit in evaluate() and str().
MAX_COMPARISONS: Final = 200

_OPERATIONS: Final[Mapping[str, Callable[[Any, Any], Any]]] = MappingProxyType(
    {
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
        "==": operator.eq,
        "!=": operator.ne,
    }
)
_FLIPPED: Final = MappingProxyType(
    {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
)
_KEYWORDS: Final = frozenset({"and", "or", "not", "true", "false"})
_OPERANDS: Final = frozenset({"name", "number", "true", "false"})

_TOKEN_RE: Final = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<number>-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    | (?P<op><=|>=|==|!=|<|>)
    | (?P<paren>[()])
    """,
    re.VERBOSE,
)
# Spellings from other languages, caught to say what to write instead.
_MISTAKES: Final = (
    ("&&", "use 'and'"),
    ("||", "use 'or'"),
    ("=>", "use '>='"),
    ("=<", "use '<='"),
    ("=", "use '==' to compare"),
    ("!", "use 'not', or '!=' to compare"),
    ("&", "use 'and'"),
    ("|", "use 'or'"),
)


class ConditionError(ValueError):
    """A condition that does not parse; `column` is 1-based in the condition's text."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} (column {column})")
        self.message = message
        self.column = column


class Condition(ABC):
    """A parsed condition: Compare, And, Or or Not."""

    # Binding strength, used by __str__ to add only the parentheses needed.
    precedence: int = 0

    @abstractmethod
    def evaluate(self, results: Mapping[str, object]) -> bool:
        """Whether the results meet the condition; never raises."""

    @abstractmethod
    def names(self) -> frozenset[str]:
        """The result names the condition reads."""


@frozen
class Compare(Condition):
    """`name op value`; `0.95 <= accuracy` is kept as `accuracy >= 0.95`."""

    name: str
    op: str
    value: float | bool
    precedence = 4

    def evaluate(self, results: Mapping[str, object]) -> bool:
        actual = _lookup(results, self.name)
        if isinstance(self.value, bool):
            return isinstance(actual, bool) and (actual == self.value) == (self.op == "==")
        if not _is_number(actual):
            return False
        return bool(_OPERATIONS[self.op](actual, self.value))

    def names(self) -> frozenset[str]:
        return frozenset({self.name})

    def __str__(self) -> str:
        return f"{self.name} {self.op} {_render(self.value)}"


@frozen
class Not(Condition):
    """`not operand`."""

    operand: Condition
    precedence = 3

    def evaluate(self, results: Mapping[str, object]) -> bool:
        return not self.operand.evaluate(results)

    def names(self) -> frozenset[str]:
        return self.operand.names()

    def __str__(self) -> str:
        return f"not {_wrap(self.operand, self.precedence)}"


@frozen
class And(Condition):
    """`left and right`."""

    left: Condition
    right: Condition
    precedence = 2

    def evaluate(self, results: Mapping[str, object]) -> bool:
        return self.left.evaluate(results) and self.right.evaluate(results)

    def names(self) -> frozenset[str]:
        return self.left.names() | self.right.names()

    def __str__(self) -> str:
        return _binary(self, "and")


@frozen
class Or(Condition):
    """`left or right`."""

    left: Condition
    right: Condition
    precedence = 1

    def evaluate(self, results: Mapping[str, object]) -> bool:
        return self.left.evaluate(results) or self.right.evaluate(results)

    def names(self) -> frozenset[str]:
        return self.left.names() | self.right.names()

    def __str__(self) -> str:
        return _binary(self, "or")


@frozen
class _Token:
    """A token of a condition, and the column it starts at."""

    kind: str  # name, number, op, (, ), and, or, not, true, false, end
    text: str
    column: int


def parse_condition(text: str) -> Condition:
    """Parse `text`; raise ConditionError naming the offending token's column."""
    return _Parser(_tokenize(text)).parse()


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN_RE.match(text, position)
        if match is None:
            raise _bad_character(text, position)
        kind, value = match.lastgroup or "", match.group()
        if kind == "paren" or (kind == "name" and value in _KEYWORDS):
            kind = value
        elif kind == "number" and re.match(r"[A-Za-z_.]", text[match.end() :]):
            word = text[position:].split(maxsplit=1)[0]
            raise ConditionError(f"'{word}' is not a number", position + 1)
        if kind != "space":
            tokens.append(_Token(kind, value, position + 1))
        position = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _bad_character(text: str, position: int) -> ConditionError:
    for spelling, advice in _MISTAKES:
        if text.startswith(spelling, position):
            return ConditionError(f"'{spelling}' is not an operator: {advice}", position + 1)
    return ConditionError(f"unexpected character '{text[position]}'", position + 1)


class _Parser:
    """Recursive descent: or_ -> and_ -> not_ -> primary -> comparison."""

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._position = 0
        self._depth = 0
        self._comparisons = 0

    def parse(self) -> Condition:
        if self._peek().kind == "end":
            raise ConditionError("the condition is empty", 1)
        condition = self._or()
        token = self._peek()
        if token.kind == ")":
            raise ConditionError("unexpected ')': it closes no '('", token.column)
        if token.kind != "end":
            raise _unexpected(token, "'and', 'or' or the end of the condition")
        return condition

    def _peek(self) -> _Token:
        return self._tokens[self._position]

    def _next(self) -> _Token:
        token = self._tokens[self._position]
        if token.kind != "end":
            self._position += 1
        return token

    def _or(self) -> Condition:
        condition = self._and()
        while self._peek().kind == "or":
            self._next()
            condition = Or(condition, self._and())
        return condition

    def _and(self) -> Condition:
        condition = self._not()
        while self._peek().kind == "and":
            self._next()
            condition = And(condition, self._not())
        return condition

    def _not(self) -> Condition:
        if self._peek().kind != "not":
            return self._primary()
        self._enter(self._next())
        operand = self._not()
        self._depth -= 1
        return Not(operand)

    def _primary(self) -> Condition:
        token = self._next()
        if token.kind in _OPERANDS:
            return self._comparison(token)
        if token.kind != "(":
            raise _unexpected(token, "a comparison such as 'accuracy >= 0.95'")
        self._enter(token)
        condition = self._or()
        close = self._next()
        if close.kind != ")":
            raise _unexpected(close, f"')' to close the '(' at column {token.column}")
        self._depth -= 1
        return condition

    def _comparison(self, left: _Token) -> Condition:
        self._comparisons += 1
        if self._comparisons > MAX_COMPARISONS:
            raise ConditionError(
                f"the condition has more than {MAX_COMPARISONS} comparisons", left.column
            )
        op = self._next()
        if op.kind != "op":
            raise ConditionError(f"expected a comparison operator after '{left.text}'", op.column)
        right = self._next()
        if right.kind not in _OPERANDS:
            wanted = "a number, true or false" if left.kind == "name" else "a result name"
            raise _unexpected(right, f"{wanted} after '{op.text}'")
        chained = self._peek()
        if chained.kind == "op":
            raise ConditionError(
                "comparisons cannot be chained: join them with 'and', "
                "e.g. '0.9 < acc and acc < 0.99'",
                chained.column,
            )
        return _compare(left, op, right)

    def _enter(self, token: _Token) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ConditionError(
                f"the condition is nested more than {MAX_DEPTH} levels deep", token.column
            )


def _compare(left: _Token, op: _Token, right: _Token) -> Compare:
    if left.kind == "name" and right.kind == "name":
        raise ConditionError(
            f"cannot compare '{left.text}' with '{right.text}': "
            "one side must be a number, true or false",
            right.column,
        )
    if left.kind != "name" and right.kind != "name":
        raise ConditionError(
            "a comparison needs a result name on one side, e.g. 'accuracy >= 0.95'",
            left.column,
        )
    name, constant = (left, right) if left.kind == "name" else (right, left)
    value = _constant(constant)
    if isinstance(value, bool) and op.text not in ("==", "!="):
        raise ConditionError(
            f"'{op.text}' cannot compare with {constant.text}: use == or !=", op.column
        )
    symbol = op.text if name is left else _FLIPPED[op.text]
    return Compare(name.text, symbol, value)


def _constant(token: _Token) -> float | bool:
    if token.kind in ("true", "false"):
        return token.kind == "true"
    if re.fullmatch(r"-?[0-9]+", token.text):
        return int(token.text)
    value = float(token.text)
    if math.isinf(value):
        raise ConditionError(f"the number '{token.text}' is too large", token.column)
    return value


def _unexpected(token: _Token, expected: str) -> ConditionError:
    if token.kind == "end":
        return ConditionError(f"unexpected end of condition: expected {expected}", token.column)
    return ConditionError(f"unexpected '{token.text}': expected {expected}", token.column)


def _lookup(results: Mapping[str, object], name: str) -> object:
    """results[name], or for a dotted name the value nested in mappings."""
    if name in results:
        return results[name]
    current: object = results
    for part in name.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def _is_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return not math.isnan(value)


def _render(value: float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _wrap(condition: Condition, minimum: int) -> str:
    text = str(condition)
    return text if condition.precedence >= minimum else f"({text})"


def _binary(condition: And | Or, word: str) -> str:
    # The right side is wrapped at equal precedence so the text parses back to the same tree.
    left = _wrap(condition.left, condition.precedence)
    right = _wrap(condition.right, condition.precedence + 1)
    return f"{left} {word} {right}"
