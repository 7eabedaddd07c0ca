"""The validator's fast path must agree with jsonschema on every document we have:
it may only pass documents jsonschema passes, and must pass the valid ones. Both
read a `pattern` as JSON Schema (ECMA-262) means it: `$` only at the very end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.errors import ProjectInvalid
from runner.project.schema import KINDS, fast_check, schema_text, validator_class
from runner.project.yamlread import read_document

ROOT = Path(__file__).parents[1]
DOCUMENTS = sorted(
    [*ROOT.glob("tests/examples/*/*.yaml"), *ROOT.glob("tests/corpus/**/*.yaml"),
     *ROOT.glob("sample-project/**/*.yaml"), *ROOT.glob("tests/projects/**/*.yaml")]
)


def _load(path: Path) -> object:
    """The document as the validator reads it (None when it cannot be read)."""
    try:
        return read_document(path.name, path.read_bytes()).data
    except ProjectInvalid:
        return None


@pytest.mark.parametrize("kind", KINDS)
def test_fast_path_agrees_with_jsonschema(kind: str) -> None:
    schema = json.loads(schema_text(kind))
    fast = fast_check(schema)
    assert fast is not None, f"the {kind} schema has no fast path"
    validator = validator_class()(schema)
    compared = 0
    for path in DOCUMENTS:
        data = _load(path)
        if not isinstance(data, dict) or data.get("kind") != kind:
            continue
        compared += 1
        assert fast(data) == validator.is_valid(data), path
    assert compared >= 5


def test_a_pattern_ends_at_the_very_end_not_before_a_final_newline() -> None:
    schema = json.loads(schema_text("project"))
    fast = fast_check(schema)
    assert fast is not None
    valid = {"apiVersion": "runyard/v1", "kind": "project", "name": "churn"}
    for data in (valid, {**valid, "name": "churn\n"}, {**valid, "defaults": {"env": {"A\n": 1}}}):
        expected = data is valid
        assert fast(data) is expected, data
        assert validator_class()(schema).is_valid(data) is expected, data
