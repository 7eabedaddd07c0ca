"""The validator's fast path must agree with jsonschema on every document we have:
it may only pass documents jsonschema passes, and must pass the valid ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from runner.schema import KINDS, fast_check, schema_text

ROOT = Path(__file__).parents[1]
DOCUMENTS = sorted(
    [*ROOT.glob("tests/examples/*/*.yaml"), *ROOT.glob("tests/corpus/**/*.yaml"),
     *ROOT.glob("sample-project/**/*.yaml"), *ROOT.glob("tests/projects/**/*.yaml")]
)


def _load(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None


@pytest.mark.parametrize("kind", KINDS)
def test_fast_path_agrees_with_jsonschema(kind: str) -> None:
    schema = json.loads(schema_text(kind))
    fast = fast_check(schema)
    assert fast is not None, f"the {kind} schema has no fast path"
    validator = Draft202012Validator(schema)
    compared = 0
    for path in DOCUMENTS:
        data = _load(path)
        if not isinstance(data, dict) or data.get("kind") != kind:
            continue
        compared += 1
        assert fast(data) == validator.is_valid(data), path
    assert compared >= 5
