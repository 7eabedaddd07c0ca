"""JSON Schema validation of one document, with errors placed at file:line:col."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from runner.errors import Problem
from runner.yamlread import Document, Path

KINDS = ("project", "function", "pipeline", "job")
NAME_PATTERN = "^[a-z][a-z0-9-]{0,62}$"
IDENTIFIER_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*$"
_DEFS = "#/$defs/"
_ANNOTATIONS = frozenset({"title", "description", "examples", "default", "$comment"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties"})  # name -> sub-schema
_SCHEMA_VALUES = frozenset({"items", "additionalProperties", "propertyNames", "contains"})
_JSON_TYPES = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
               int: "an integer", float: "a number", type(None): "empty (null)"}


def schema_text(kind: str) -> str:
    """The JSON Schema of a kind (or of the run record, `run`), as shipped."""
    return (resources.files("runner") / "schemas" / f"{kind}.schema.json").read_text("utf-8")


class SchemaSet:
    """One compiled validator per kind, made once per load."""

    def __init__(self) -> None:
        self.validators = {
            kind: Draft202012Validator(inline_refs(json.loads(schema_text(kind)))) for kind in KINDS
        }

    def problems(self, kind: str, doc: Document) -> list[Problem]:
        found: list[Problem] = []
        for error in self.validators[kind].iter_errors(doc.data):
            found.extend(_describe(doc, error))
        return found


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with each local `$ref` (`#/$defs/NAME`) replaced by what it names.

    Only for speed: jsonschema looks a `$ref` up again on every visit, a third of
    the validation time of a large project. Errors stay the same: the target's
    keywords take the place of the `$ref`, in order, and a `$ref` is inlined only
    where its siblings are annotations. Sub-schemas under `oneOf`, `if` and the
    like are kept as written (an error message may print them); `$defs` stays, so
    a `$ref` left there still resolves.
    """
    inlined: dict[str, Any] = _inlined(schema, schema.get("$defs", {}), ())
    return inlined


def _inlined(schema: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if not isinstance(schema, dict):
        return schema
    ref = _inlinable_ref(schema, defs, seen)
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$ref" and ref is not None:
            target = _inlined(defs[ref.removeprefix(_DEFS)], defs, (*seen, ref))
            for target_key, target_value in target.items():
                result.setdefault(target_key, target_value)
        elif key in _SCHEMA_MAPS:
            result[key] = {name: _inlined(sub, defs, seen) for name, sub in value.items()}
        elif key in _SCHEMA_VALUES:
            result[key] = _inlined(value, defs, seen)
        else:
            result[key] = value
    return result


def _inlinable_ref(
    schema: dict[str, Any], defs: dict[str, Any], seen: tuple[str, ...]
) -> str | None:
    """The schema's `$ref` when it names one of `defs`, not in a cycle, beside annotations only."""
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith(_DEFS) or ref in seen:
        return None
    if ref.removeprefix(_DEFS) not in defs or not set(schema) - {"$ref"} <= _ANNOTATIONS:
        return None
    return ref


def _describe(doc: Document, error: ValidationError) -> Iterator[Problem]:
    path: Path = tuple(error.absolute_path)
    where = _dotted(path)
    prefix = f"{where}: " if where else ""
    schema: Any = error.schema
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(schema.get("properties", {}))
        for key in sorted(set(error.instance) - set(known)):
            hint = difflib.get_close_matches(key, known, n=1)
            also = f"; did you mean {hint[0]!r}?" if hint else f"; known keys: {', '.join(known)}"
            yield doc.problem((*path, key), f"{prefix}unknown key {key!r}{also}", key=True)
        return
    if "propertyNames" in error.schema_path and isinstance(error.instance, str):
        # a bad key of a mapping: jsonschema reports it at the mapping; point at the key
        yield doc.problem((*path, error.instance), prefix + _message(error), key=True)
        return
    yield doc.problem(path, prefix + _message(error))


def _message(error: ValidationError) -> str:
    value: Any = error.instance
    rule: Any = error.validator_value
    match error.validator:
        case "type":
            wanted = " or ".join(_type_name(t) for t in ([rule] if isinstance(rule, str) else rule))
            return f"must be {wanted}, not {_JSON_TYPES.get(type(value), type(value).__name__)}"
        case "required":
            missing = [key for key in rule if key not in value]
            return f"missing required key {missing[0]!r}" if missing else str(error.message)
        case "enum":
            return f"{value!r} is not one of: {', '.join(map(str, rule))}"
        case "const":
            return f"must be {rule!r}, not {value!r}"
        case "pattern":
            return _pattern_message(value, rule)
        case "minItems":
            return f"must have at least {rule} item{'s' if rule != 1 else ''}"
        case "uniqueItems":
            return "items must be unique"
        case "minimum":
            return f"must be at least {rule}, not {value!r}"
        case "oneOf" | "anyOf":
            return _choice_message(error)
        case "propertyNames":
            return _names_message(error)
    return str(error.message)


def _choice_message(error: ValidationError) -> str:
    branches: Any = error.validator_value
    keys = [b["required"][0] for b in branches if list(b) == ["required"]]
    if keys and len(keys) == len(branches):
        return f"needs exactly one of: {', '.join(keys)}"
    best = min(error.context or [], key=lambda e: len(e.path), default=None)
    return _message(best) if best is not None else str(error.message)


def _names_message(error: ValidationError) -> str:
    bad = next((c.instance for c in error.context or []), None)
    return f"{bad!r} is not a valid key here: use letters, digits and '_'"


def _pattern_message(value: Any, pattern: str) -> str:
    if pattern == NAME_PATTERN:
        return (f"{value!r} is not a valid name: lower-case letters, digits and '-', "
                "starting with a letter, at most 63 characters")
    if pattern == IDENTIFIER_PATTERN:
        return f"{value!r} is not a valid name: letters, digits and '_', not starting with a digit"
    return f"{value!r} does not match the pattern {pattern}"


def _type_name(name: str) -> str:
    return {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
            "number": "a number", "boolean": "a boolean", "null": "empty"}.get(name, name)


def _dotted(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
