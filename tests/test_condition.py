from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.project.condition import (
    MAX_COMPARISONS,
    MAX_DEPTH,
    And,
    Compare,
    Condition,
    ConditionError,
    Not,
    Or,
    parse_condition,
)


def error_of(text: str) -> ConditionError:
    with pytest.raises(ConditionError) as caught:
        parse_condition(text)
    return caught.value


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accuracy >= 0.95", Compare("accuracy", ">=", 0.95)),
        ("loss<0.1", Compare("loss", "<", 0.1)),
        ("epochs == 10", Compare("epochs", "==", 10)),
        ("x != -3", Compare("x", "!=", -3)),
        ("x > -1.5e-3", Compare("x", ">", -0.0015)),
        ("x > 2E3", Compare("x", ">", 2000.0)),
        ("x > .5", Compare("x", ">", 0.5)),
        ("x > 5.", Compare("x", ">", 5.0)),
        ("x>-1", Compare("x", ">", -1)),
        ("metrics.acc > 0.9", Compare("metrics.acc", ">", 0.9)),
        ("_private_1 <= 3", Compare("_private_1", "<=", 3)),
        ("converged == true", Compare("converged", "==", True)),
        ("converged != false", Compare("converged", "!=", False)),
        ("  accuracy\t>=\n0.95  ", Compare("accuracy", ">=", 0.95)),
        # Keywords inside a dotted name are plain name parts.
        ("model.and.or > 1", Compare("model.and.or", ">", 1)),
    ],
)
def test_parses_comparisons(text: str, expected: Condition) -> None:
    assert parse_condition(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.95 <= accuracy", Compare("accuracy", ">=", 0.95)),
        ("0.95 < accuracy", Compare("accuracy", ">", 0.95)),
        ("1 > loss", Compare("loss", "<", 1)),
        ("1 >= loss", Compare("loss", "<=", 1)),
        ("3 == n", Compare("n", "==", 3)),
        ("true != done", Compare("done", "!=", True)),
    ],
)
def test_constant_on_the_left_is_flipped(text: str, expected: Condition) -> None:
    assert parse_condition(text) == expected


def test_integers_stay_integers_and_floats_floats() -> None:
    assert type(parse_condition("x > 3").value) is int  # type: ignore[attr-defined]
    assert type(parse_condition("x > 3.0").value) is float  # type: ignore[attr-defined]
    big = parse_condition("x > 123456789012345678901234567890")
    assert big == Compare("x", ">", 123456789012345678901234567890)


A = Compare("a", ">", 1)
B = Compare("b", ">", 2)
C = Compare("c", ">", 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a > 1 and b > 2", And(A, B)),
        ("a > 1 or b > 2", Or(A, B)),
        ("a > 1 or b > 2 and c > 3", Or(A, And(B, C))),
        ("a > 1 and b > 2 or c > 3", Or(And(A, B), C)),
        ("(a > 1 or b > 2) and c > 3", And(Or(A, B), C)),
        ("a > 1 and b > 2 and c > 3", And(And(A, B), C)),
        ("a > 1 or b > 2 or c > 3", Or(Or(A, B), C)),
        ("not a > 1", Not(A)),
        ("not a > 1 and b > 2", And(Not(A), B)),
        ("not (a > 1 and b > 2)", Not(And(A, B))),
        ("not not a > 1", Not(Not(A))),
        ("((a > 1))", A),
        ("a > 1 and (b > 2 or c > 3)", And(A, Or(B, C))),
    ],
)
def test_precedence_and_grouping(text: str, expected: Condition) -> None:
    assert parse_condition(text) == expected


def test_conditions_are_frozen_and_hashable() -> None:
    condition = parse_condition("a > 1 and not b > 2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        condition.left = B  # type: ignore[attr-defined]
    assert hash(condition) == hash(parse_condition("a>1 and not b>2"))


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("accuracy", "expected a comparison operator after 'accuracy'", 9),
        ("accuracy 0.95", "expected a comparison operator after 'accuracy'", 10),
        ("a > 1 and accuracy", "expected a comparison operator after 'accuracy'", 19),
        ("0.5 and a > 1", "expected a comparison operator after '0.5'", 5),
        ("accuracy >= 0.95)", "unexpected ')': it closes no '('", 17),
        ("()", "unexpected ')': expected a comparison such as 'accuracy >= 0.95'", 2),
        (
            "accuracy >=",
            "unexpected end of condition: expected a number, true or false after '>='",
            12,
        ),
        ("0.5 <", "unexpected end of condition: expected a result name after '<'", 6),
        (
            "a >= 1 and",
            "unexpected end of condition: expected a comparison such as 'accuracy >= 0.95'",
            11,
        ),
        ("not", "unexpected end of condition: expected a comparison such as 'accuracy >= 0.95'", 4),
        ("(a > 1", "unexpected end of condition: expected ')' to close the '(' at column 1", 7),
        ("x and (a > 1", "expected a comparison operator after 'x'", 3),
        ("(a > 1 b > 2)", "unexpected 'b': expected ')' to close the '(' at column 1", 8),
        ("a > 1 b > 2", "unexpected 'b': expected 'and', 'or' or the end of the condition", 7),
        ("and a > 1", "unexpected 'and': expected a comparison such as 'accuracy >= 0.95'", 1),
        (
            "a > 1 or or b > 2",
            "unexpected 'or': expected a comparison such as 'accuracy >= 0.95'",
            10,
        ),
        ("a > and", "unexpected 'and': expected a number, true or false after '>'", 5),
        ("", "the condition is empty", 1),
        ("   ", "the condition is empty", 1),
        ("a = 1", "'=' is not an operator: use '==' to compare", 3),
        ("a => 1", "'=>' is not an operator: use '>='", 3),
        ("a =< 1", "'=<' is not an operator: use '<='", 3),
        ("a > 1 && b > 2", "'&&' is not an operator: use 'and'", 7),
        ("a > 1 || b > 2", "'||' is not an operator: use 'or'", 7),
        ("!a", "'!' is not an operator: use 'not', or '!=' to compare", 1),
        ("a > $", "unexpected character '$'", 5),
        ("a > 'x'", "unexpected character '''", 5),
        ("a.b. > 1", "unexpected character '.'", 4),
        ("a < b", "cannot compare 'a' with 'b': one side must be a number, true or false", 5),
        ("1 < 2", "a comparison needs a result name on one side, e.g. 'accuracy >= 0.95'", 1),
        (
            "true == false",
            "a comparison needs a result name on one side, e.g. 'accuracy >= 0.95'",
            1,
        ),
        ("done < true", "'<' cannot compare with true: use == or !=", 6),
        ("false >= done", "'>=' cannot compare with false: use == or !=", 7),
        (
            "0.9 < acc < 0.99",
            "comparisons cannot be chained: join them with 'and', e.g. '0.9 < acc and acc < 0.99'",
            11,
        ),
        ("a > 1.2.3", "'1.2.3' is not a number", 5),
        ("a > 3x", "'3x' is not a number", 5),
        ("a > 1e999", "the number '1e999' is too large", 5),
        (
            "a > 1 AND b > 2",
            "unexpected 'AND': expected 'and', 'or' or the end of the condition",
            7,
        ),
    ],
)
def test_errors_name_message_and_column(text: str, message: str, column: int) -> None:
    error = error_of(text)
    assert (error.message, error.column) == (message, column)
    assert str(error) == f"{message} (column {column})"
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "accuracy.__class__ > 1 or exec('x')",
        "lambda: 1",
        "[x for x in y]",
        "a + 1 > 2",
    ],
)
def test_python_is_not_evaluated(text: str) -> None:
    error_of(text)


def test_deep_nesting_is_refused_cleanly() -> None:
    deep = "(" * (MAX_DEPTH + 1) + "a > 1" + ")" * (MAX_DEPTH + 1)
    error = error_of(deep)
    assert error.message == f"the condition is nested more than {MAX_DEPTH} levels deep"
    assert error.column == MAX_DEPTH + 1
    nots = "not " * (MAX_DEPTH + 1) + "a > 1"
    assert "nested more than" in error_of(nots).message
    fine = "(" * MAX_DEPTH + "a > 1" + ")" * MAX_DEPTH
    assert parse_condition(fine) == A


def test_too_many_comparisons_are_refused() -> None:
    many = " and ".join(["a > 1"] * MAX_COMPARISONS)
    condition = parse_condition(many)
    assert condition.evaluate({"a": 2})
    assert parse_condition(str(condition)) == condition
    error = error_of(many + " or b > 2")
    assert error.message == f"the condition has more than {MAX_COMPARISONS} comparisons"
    assert error.column == len(many) + 5


# --- evaluation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "results", "expected"),
    [
        ("accuracy >= 0.95", {"accuracy": 0.95}, True),
        ("accuracy >= 0.95", {"accuracy": 0.9}, False),
        ("accuracy > 0.95", {"accuracy": 0.95}, False),
        ("accuracy < 0.95", {"accuracy": 0.9}, True),
        ("accuracy <= 0.95", {"accuracy": 1}, False),
        ("epochs == 10", {"epochs": 10.0}, True),
        ("epochs != 10", {"epochs": 11}, True),
        ("0.95 <= accuracy", {"accuracy": 0.97}, True),
        ("0.95 <= accuracy", {"accuracy": 0.94}, False),
        ("accuracy >= 0.95 and loss < 0.1", {"accuracy": 0.96, "loss": 0.05}, True),
        ("accuracy >= 0.95 and loss < 0.1", {"accuracy": 0.96, "loss": 0.5}, False),
        ("accuracy >= 0.95 or loss < 0.1", {"accuracy": 0.5, "loss": 0.05}, True),
        ("not accuracy >= 0.95", {"accuracy": 0.5}, True),
        ("converged == true", {"converged": True}, True),
        ("converged == true", {"converged": False}, False),
        ("converged != true", {"converged": False}, True),
        ("converged == false", {"converged": False}, True),
        # A missing name makes the comparison false, whatever the operator.
        ("accuracy >= 0.95", {}, False),
        ("accuracy != 0.95", {}, False),
        ("converged != true", {}, False),
        ("not accuracy >= 0.95", {}, True),
        ("accuracy >= 0.95 or loss < 0.1", {"loss": 0.01}, True),
        # Values of the wrong kind make it false too.
        ("accuracy >= 0.95", {"accuracy": "0.99"}, False),
        ("accuracy >= 0.95", {"accuracy": None}, False),
        ("accuracy >= 0.95", {"accuracy": [1.0]}, False),
        ("accuracy != 0.95", {"accuracy": "high"}, False),
        ("accuracy >= 0", {"accuracy": True}, False),
        ("accuracy == 1", {"accuracy": True}, False),
        ("converged == true", {"converged": 1}, False),
        ("converged != true", {"converged": 0}, False),
        ("accuracy >= 0.95", {"accuracy": float("nan")}, False),
        ("accuracy != 0.95", {"accuracy": float("nan")}, False),
        ("accuracy < 0.95", {"accuracy": float("-inf")}, True),
        # Dotted names: a flat key first, else nested mappings.
        ("metrics.acc > 0.9", {"metrics.acc": 0.95}, True),
        ("metrics.acc > 0.9", {"metrics": {"acc": 0.95}}, True),
        ("metrics.acc > 0.9", {"metrics": {"acc": 0.5}}, False),
        ("metrics.acc > 0.9", {"metrics": {}}, False),
        ("metrics.acc > 0.9", {"metrics": 0.95}, False),
        ("a.b.c == 1", {"a": {"b": {"c": 1}}}, True),
    ],
)
def test_evaluate(text: str, results: dict[str, object], expected: bool) -> None:
    assert parse_condition(text).evaluate(results) is expected


def test_evaluate_accepts_other_real_numbers() -> None:
    from decimal import Decimal
    from fractions import Fraction

    assert parse_condition("x > 0.5").evaluate({"x": Fraction(3, 4)})
    assert not parse_condition("x > 0.5").evaluate({"x": Decimal("0.9")})  # not a numbers.Real


def test_names() -> None:
    condition = parse_condition("accuracy >= 0.95 and (loss < 0.1 or not metrics.f1 > 0.8)")
    assert condition.names() == frozenset({"accuracy", "loss", "metrics.f1"})
    assert parse_condition("a > 1 or a < 0").names() == frozenset({"a"})


# --- rendering -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("accuracy>=0.95", "accuracy >= 0.95"),
        ("0.95 <= accuracy", "accuracy >= 0.95"),
        ("a > 1 or b > 2 and c > 3", "a > 1 or b > 2 and c > 3"),
        ("(a > 1 or b > 2) and c > 3", "(a > 1 or b > 2) and c > 3"),
        ("a > 1 and (b > 2 and c > 3)", "a > 1 and (b > 2 and c > 3)"),
        ("((a > 1) and (b > 2))", "a > 1 and b > 2"),
        ("not (a > 1 or b > 2)", "not (a > 1 or b > 2)"),
        ("not not a > 1", "not not a > 1"),
        ("done == true and x != -2.5e-07", "done == true and x != -2.5e-07"),
        ("x > 1e20", "x > 1e+20"),
    ],
)
def test_str_renders_back(text: str, rendered: str) -> None:
    condition = parse_condition(text)
    assert str(condition) == rendered
    assert parse_condition(rendered) == condition


_NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,5}(\.[a-z_][a-z0-9_]{0,3})?", fullmatch=True).filter(
    lambda name: name not in {"and", "or", "not", "true", "false"}
)
_NUMBERS = st.integers(-(10**12), 10**12) | st.floats(allow_nan=False, allow_infinity=False)
_COMPARES = st.one_of(
    st.builds(Compare, _NAMES, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), _NUMBERS),
    st.builds(Compare, _NAMES, st.sampled_from(["==", "!="]), st.booleans()),
)
_CONDITIONS = st.recursive(
    _COMPARES,
    lambda inner: (
        st.builds(And, inner, inner) | st.builds(Or, inner, inner) | st.builds(Not, inner)
    ),
    max_leaves=12,
)


@given(_CONDITIONS)
def test_any_tree_renders_to_text_that_parses_back(condition: Condition) -> None:
    assert parse_condition(str(condition)) == condition


@given(_CONDITIONS, st.dictionaries(_NAMES, _NUMBERS | st.booleans() | st.text(max_size=2)))
def test_evaluate_never_raises(condition: Condition, results: dict[str, object]) -> None:
    assert isinstance(condition.evaluate(results), bool)


@given(st.text(alphabet="ab01.<>=!() -andortuefls", max_size=30))
def test_parser_raises_only_condition_errors(text: str) -> None:
    try:
        condition = parse_condition(text)
    except ConditionError as error:
        assert 1 <= error.column <= len(text) + 1
    else:
        assert parse_condition(str(condition)) == condition
