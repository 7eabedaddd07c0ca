"""The JSON Schemas in schemas/: valid themselves, documented, and right on the examples.

tests/examples/valid/ holds files every schema must accept (the sketches of DESIGN.md
section 1 verbatim, and realistic variants); tests/examples/invalid/ holds files the
schema alone must reject, each starting with a `# error: <what>` comment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from runner.project.schema import pattern_message

ROOT = Path(__file__).parents[1]
SCHEMAS = ROOT / "schemas"
EXAMPLES = Path(__file__).parent / "examples"
KINDS = ("project", "function", "pipeline", "job", "run")

VALID = sorted((EXAMPLES / "valid").glob("*.yaml"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))

# Keywords whose value is one subschema, a list of subschemas, or a map of them.
_ONE = (
    "items",
    "additionalProperties",
    "propertyNames",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
)
_LIST = ("oneOf", "anyOf", "allOf", "prefixItems")
_MAP = ("properties", "patternProperties", "$defs", "dependentSchemas")
# Subschemas an editor shows as help: these must carry a title and a description.
_DOCUMENTED_MAP = ("properties", "patternProperties", "$defs")
_DOCUMENTED_ONE = ("items", "additionalProperties")


@cache
def load_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / f"{kind}.schema.json").read_text("utf-8"))
    return schema


def validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(kind))


def load_example(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text("utf-8"))
    assert isinstance(data, dict), f"{path.name}: not a mapping"
    assert data.get("kind") in KINDS, f"{path.name}: kind must be one of {KINDS}"
    return data


def subschemas(schema: Any, where: str = "#") -> Iterator[tuple[str, str, Any]]:
    """Yield (keyword, JSON pointer, subschema) for every subschema below `schema`."""
    if not isinstance(schema, dict):
        return
    for keyword in _ONE:
        if keyword in schema:
            yield keyword, f"{where}/{keyword}", schema[keyword]
    for keyword in _LIST:
        for i, sub in enumerate(schema.get(keyword, ())):
            yield keyword, f"{where}/{keyword}/{i}", sub
    for keyword in _MAP:
        for key, sub in schema.get(keyword, {}).items():
            yield keyword, f"{where}/{keyword}/{key}", sub


def undocumented(schema: Any, where: str = "#") -> Iterator[str]:
    """Pointers of properties, definitions, items and value schemas lacking help text."""
    for keyword, pointer, sub in subschemas(schema, where):
        if isinstance(sub, dict) and (keyword in _DOCUMENTED_MAP or keyword in _DOCUMENTED_ONE):
            for field in ("title", "description"):
                text = sub.get(field)
                if not (isinstance(text, str) and text.strip()):
                    yield f"{pointer}: no {field}"
        yield from undocumented(sub, pointer)


def all_nodes(schema: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        yield where, schema
    for _, pointer, sub in subschemas(schema, where):
        yield from all_nodes(sub, pointer)


def error_lines(kind: str, data: dict[str, Any]) -> list[str]:
    errors = sorted(validator(kind).iter_errors(data), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


# ---------------------------------------------------------------- the schemas


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_valid_draft_2020_12(kind: str) -> None:
    Draft202012Validator.check_schema(load_schema(kind))


@pytest.mark.parametrize("kind", KINDS)
def test_schema_header(kind: str) -> None:
    schema = load_schema(kind)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://runyard.dev/schemas/v1/{kind}.schema.json"
    assert schema["title"].strip()
    assert schema["description"].strip()
    assert schema["properties"]["apiVersion"]["const"] == "runyard/v1"
    assert schema["properties"]["kind"]["const"] == kind
    assert {"apiVersion", "kind"} <= set(schema["required"])


@pytest.mark.parametrize("kind", KINDS)
def test_every_property_has_title_and_description(kind: str) -> None:
    assert list(undocumented(load_schema(kind))) == []


def test_walker_finds_undocumented_nested_properties() -> None:
    schema = {
        "$defs": {"thing": {"title": "T", "description": "D", "properties": {"a": {}}}},
        "properties": {"x": {"title": "X", "description": "D", "items": {"title": "I"}}},
        "oneOf": [{"properties": {"y": {"description": "D"}}}],
    }
    assert sorted(undocumented(schema)) == [
        "#/$defs/thing/properties/a: no description",
        "#/$defs/thing/properties/a: no title",
        "#/oneOf/0/properties/y: no title",
        "#/properties/x/items: no description",
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_objects_with_fixed_keys_forbid_unknown_keys(kind: str) -> None:
    for pointer, node in all_nodes(load_schema(kind)):
        if "properties" in node:
            assert node.get("additionalProperties") is False, pointer


@pytest.mark.parametrize("kind", KINDS[:-1])  # a user writes every kind but the run record
def test_every_pattern_is_explained_in_words(kind: str) -> None:
    """`validate` never answers a value with a regular expression it does not match."""
    for pointer, node in all_nodes(load_schema(kind)):
        if "pattern" in node:
            assert re.search(node["pattern"], "\x00") is None, pointer
            message = pattern_message("\x00", node["pattern"])
            assert "pattern" not in message, f"{pointer}: {message}"


@pytest.mark.parametrize("kind", KINDS)
def test_every_ref_resolves_locally(kind: str) -> None:
    schema = load_schema(kind)
    defs = schema.get("$defs", {})
    for pointer, node in all_nodes(schema):
        if "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/$defs/"), f"{pointer}: non-local $ref {ref}"
            assert ref.removeprefix("#/$defs/") in defs, f"{pointer}: dangling $ref {ref}"


# --------------------------------------------------------------- the examples


def test_examples_cover_every_kind() -> None:
    assert {load_example(path)["kind"] for path in VALID} == set(KINDS)
    assert {load_example(path)["kind"] for path in INVALID} == set(KINDS)
    assert len(INVALID) >= 15


@pytest.mark.parametrize("path", VALID, ids=[path.name for path in VALID])
def test_valid_example_passes(path: Path) -> None:
    data = load_example(path)
    assert error_lines(data["kind"], data) == []


@pytest.mark.parametrize("path", INVALID, ids=[path.name for path in INVALID])
def test_invalid_example_fails(path: Path) -> None:
    first_line = path.read_text("utf-8").splitlines()[0]
    assert first_line.startswith("# error: "), f"{path.name}: first line must be '# error: ...'"
    data = load_example(path)
    assert error_lines(data["kind"], data), f"{path.name} should fail: {first_line}"
