"""JSON Schema validation of one document, with errors placed at file:line:col."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from runner.errors import Problem, did_you_mean
from runner.files import package_file
from runner.project import refs
from runner.project.yamlread import Document, Path

if TYPE_CHECKING:
    from jsonschema import ValidationError
    from jsonschema.protocols import Validator

Check = Callable[[Any], bool]

KINDS = ("project", "function", "pipeline", "job")
NAME_PATTERN = "^[a-z][a-z0-9-]{0,62}$"
IDENTIFIER_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*$"
_IDENTITY = frozenset({"apiVersion", "kind", "name"})  # a file wrong in these is not used at all
_DEFS = "#/$defs/"
_ANNOTATIONS = frozenset({"title", "description", "examples", "default", "$comment"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties"})  # name -> sub-schema
_SCHEMA_VALUES = frozenset({"items", "additionalProperties", "propertyNames", "contains"})
_JSON_TYPES = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
               int: "an integer", float: "a number", type(None): "empty (null)"}


def schema_text(kind: str) -> str:
    """The JSON Schema of a kind (or of the run record, `run`), as shipped."""
    return package_file("schemas", f"{kind}.schema.json").read_text("utf-8")


class SchemaSet:
    """The schema of each kind, made once per load and only for the kinds it meets: a
    fast test that passes valid documents, and a jsonschema validator, made (and
    imported) only when a document fails the test, to say what is wrong with it."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}
        self.fast: dict[str, Check | None] = {}
        self.validators: dict[str, Validator] = {}

    def check(self, kind: str, doc: Document) -> Checked:
        if kind not in self.fast:
            self.fast[kind] = fast_check(self.schema(kind))
        fast = self.fast[kind]
        if fast is not None and fast(doc.data):
            return Checked([], doc)
        errors = list(self.validator(kind).iter_errors(doc.data))
        problems = [problem for error in errors for problem in _describe(doc, error)]
        return Checked(list(dict.fromkeys(problems)), _usable(doc, errors))

    def schema(self, kind: str) -> dict[str, Any]:
        if kind not in self.schemas:
            self.schemas[kind] = json.loads(schema_text(kind))
        return self.schemas[kind]

    def validator(self, kind: str) -> Validator:
        if kind not in self.validators:
            self.validators[kind] = validator_class()(inline_refs(self.schema(kind)))
        return self.validators[kind]


class Checked(NamedTuple):
    """A document's schema problems, and what of it the checks across files may use."""

    problems: list[Problem]
    usable: Document | None  # without its invalid parts; None when it is not of its kind at all


def _usable(doc: Document, errors: list[ValidationError]) -> Document | None:
    """`doc` without the values its schema errors are about (and with `lost` saying where
    they were), or None when an error is about what the document is (kind, name, ...)."""
    data = copy.deepcopy(doc.data)
    lost: set[Path] = set()
    for error in errors:
        cut = _cut(error)
        if cut is None:
            return None
        where, keys = cut
        mapping = _at(data, where)
        if isinstance(mapping, dict):  # else it is gone with an earlier cut
            for key in keys:
                mapping.pop(key, None)
            lost.add(where)
    return dataclasses.replace(doc, data=data, lost=frozenset(lost))


def _cut(error: ValidationError) -> tuple[Path, list[str]] | None:
    """The mapping to leave keys out of for `error`, and those keys; None to drop it all."""
    path: Path = tuple(error.absolute_path)
    instance: Any = error.instance
    if "propertyNames" in error.schema_path:  # a bad key: jsonschema reports it at the mapping
        return path, [instance]
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = error.schema.get("properties", {})  # type: ignore[union-attr]
        return path, [key for key in instance if key not in known]
    if error.validator == "required" and isinstance(instance, dict):
        missing = {key for key in error.validator_value if key not in instance}  # type: ignore[union-attr]
        return None if not path and missing & _IDENTITY else (path, [])
    keys = [i for i, part in enumerate(path) if isinstance(part, str)]
    if not keys or (keys[-1] == 0 and path[0] in _IDENTITY):
        return None
    return path[:keys[-1]], [str(path[keys[-1]])]


def _at(data: Any, path: Path) -> Any:
    for part in path:
        if isinstance(part, str) and isinstance(data, dict):
            data = data.get(part)
        elif isinstance(part, int) and isinstance(data, list) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def validator_class() -> type[Validator]:
    """Draft 2020-12, with `pattern` read as JSON Schema means it (see `compile_pattern`)."""
    from jsonschema import Draft202012Validator, validators

    extended: type[Validator] = validators.extend(  # type: ignore[no-untyped-call]
        Draft202012Validator, {"pattern": _pattern})
    return extended


def _pattern(validator: Validator, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    from jsonschema import ValidationError

    if validator.is_type(instance, "string") and not refs.compile_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


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


def fast_check(schema: dict[str, Any]) -> Check | None:
    """A quick test passed only by documents `schema` surely accepts, or None if none can be made.

    jsonschema is thorough but slow, to import and to run (about a millisecond a
    file); most files are valid, so they pass this test and jsonschema runs only
    on the others, to say what is wrong. The test knows the keywords the shipped
    schemas use (a schema with another gets None: jsonschema for every file), and
    fails when unsure (`uniqueItems` over mappings), so it never lets through
    what jsonschema refuses.
    """
    try:
        return _FastCompiler(schema.get("$defs", {})).compile(schema)
    except _Unsupported:
        return None


class _Unsupported(Exception):
    """The schema uses what the fast test does not know."""


def _always(value: Any) -> bool:
    return True


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _is_integer(value: Any) -> bool:
    return type(value) is int or (type(value) is float and value.is_integer())


_FAST_TYPES: dict[str, Check] = {
    "object": lambda value: type(value) is dict,
    "array": lambda value: type(value) is list,
    "string": lambda value: type(value) is str,
    "boolean": lambda value: type(value) is bool,
    "null": lambda value: value is None,
    "number": _is_number,
    "integer": _is_integer,
}
_FAST_IGNORED = _ANNOTATIONS | {"$schema", "$id", "$defs", "then", "else"}  # then/else: with `if`


class _FastCompiler:
    """Turns a schema into one Python predicate, keyword by keyword."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.refs: dict[tuple[str, bool], Check] = {}
        self.compiling: set[str] = set()
        self.exact = 0  # > 0 inside `oneOf` and `if`, where "unsure" must not be "invalid"

    def compile(self, schema: Any) -> Check:
        if schema is True:
            return _always
        if not isinstance(schema, dict):
            raise _Unsupported(repr(schema))
        checks = [self.keyword(key, value, schema)
                  for key, value in schema.items() if key not in _FAST_IGNORED]
        return _all_of([check for check in checks if check is not _always])

    def keyword(self, key: str, value: Any, schema: dict[str, Any]) -> Check:
        make = getattr(self, f"k_{key.removeprefix('$')}", None)
        if make is None:
            raise _Unsupported(key)
        check: Check = make(value, schema)
        return check

    def k_ref(self, ref: Any, schema: dict[str, Any]) -> Check:
        if not isinstance(ref, str) or ref.removeprefix(_DEFS) not in self.defs:
            raise _Unsupported(ref)
        if ref in self.compiling or not ref.startswith(_DEFS):
            raise _Unsupported(ref)
        key = (ref, self.exact > 0)
        if key not in self.refs:
            self.compiling.add(ref)
            self.refs[key] = self.compile(self.defs[ref.removeprefix(_DEFS)])
            self.compiling.discard(ref)
        return self.refs[key]

    def exactly(self, schema: Any) -> Check:
        """The test of `schema` where its answer is negated or counted: never unsure."""
        self.exact += 1
        try:
            return self.compile(schema)
        finally:
            self.exact -= 1

    def k_type(self, names: Any, schema: dict[str, Any]) -> Check:
        tests = [_FAST_TYPES[name] for name in ([names] if isinstance(names, str) else names)]
        return tests[0] if len(tests) == 1 else lambda value: any(t(value) for t in tests)

    def k_const(self, const: Any, schema: dict[str, Any]) -> Check:
        if type(const) is not str:
            raise _Unsupported("const")
        return lambda value: type(value) is str and value == const

    def k_enum(self, options: Any, schema: dict[str, Any]) -> Check:
        if not all(type(option) is str for option in options):
            raise _Unsupported("enum")
        allowed = frozenset(options)
        return lambda value: type(value) is str and value in allowed

    def k_pattern(self, pattern: str, schema: dict[str, Any]) -> Check:
        search = refs.compile_pattern(pattern).search
        return lambda value: type(value) is not str or search(value) is not None

    # The comparisons are written as jsonschema writes them, so that NaN passes alike.

    def k_minLength(self, least: int, schema: dict[str, Any]) -> Check:
        return lambda value: type(value) is not str or not len(value) < least

    def k_minItems(self, least: int, schema: dict[str, Any]) -> Check:
        return lambda value: type(value) is not list or not len(value) < least

    def k_minimum(self, least: float, schema: dict[str, Any]) -> Check:
        return lambda value: not _is_number(value) or not value < least

    def k_exclusiveMinimum(self, above: float, schema: dict[str, Any]) -> Check:
        return lambda value: not _is_number(value) or not value <= above

    def k_uniqueItems(self, unique: bool, schema: dict[str, Any]) -> Check:
        if unique and self.exact:
            raise _Unsupported("uniqueItems where the test must be exact")
        return _unique_strings if unique else _always

    def k_required(self, keys: list[str], schema: dict[str, Any]) -> Check:
        needed = frozenset(keys)
        return lambda value: type(value) is not dict or needed.issubset(value)

    def k_properties(self, properties: dict[str, Any], schema: dict[str, Any]) -> Check:
        checks = {name: self.compile(sub) for name, sub in properties.items()}

        def check(value: Any) -> bool:
            if type(value) is not dict:
                return True
            for key, item in value.items():
                test = checks.get(key)
                if test is not None and not test(item):
                    return False
            return True

        return check

    def k_additionalProperties(self, extra: Any, schema: dict[str, Any]) -> Check:
        if "patternProperties" in schema:
            raise _Unsupported("patternProperties")
        known = frozenset(schema.get("properties", {}))
        if extra is False:
            return lambda value: type(value) is not dict or known.issuperset(value)
        test = self.compile(extra)
        return lambda value: type(value) is not dict or all(
            test(item) for key, item in value.items() if key not in known)

    def k_propertyNames(self, names: Any, schema: dict[str, Any]) -> Check:
        test = self.compile(names)
        return lambda value: type(value) is not dict or all(test(key) for key in value)

    def k_items(self, items: Any, schema: dict[str, Any]) -> Check:
        test = self.compile(items)
        return lambda value: type(value) is not list or all(test(item) for item in value)

    def k_oneOf(self, branches: list[Any], schema: dict[str, Any]) -> Check:
        tests = [self.exactly(branch) for branch in branches]
        return lambda value: sum(1 for test in tests if test(value)) == 1

    def k_if(self, condition: Any, schema: dict[str, Any]) -> Check:
        test = self.exactly(condition)
        then = self.compile(schema.get("then", True))
        otherwise = self.compile(schema.get("else", True))
        return lambda value: then(value) if test(value) else otherwise(value)


def _all_of(checks: list[Check]) -> Check:
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    return lambda value: all(check(value) for check in checks)


def _unique_strings(value: Any) -> bool:
    """True for a list of distinct strings (or a non-list); False, unsure, for anything else."""
    if type(value) is not list:
        return True
    return all(type(item) is str for item in value) and len(set(value)) == len(value)


def _describe(doc: Document, error: ValidationError) -> Iterator[Problem]:
    path: Path = tuple(error.absolute_path)
    where = _dotted(path)
    prefix = f"{where}: " if where else ""
    schema: Any = error.schema
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(schema.get("properties", {}))
        for key in sorted(set(error.instance) - set(known)):
            also = did_you_mean(key, known) or f"; known keys: {', '.join(known)}"
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
        case "required":  # jsonschema makes one error per key missing, all alike: one message
            missing = [repr(key) for key in rule if key not in value]
            if len(missing) > 1:
                return f"missing required keys {', '.join(missing[:-1])} and {missing[-1]}"
            return f"missing required key {missing[0]}" if missing else str(error.message)
        case "enum":
            return f"{value!r} is not one of: {', '.join(map(str, rule))}"
        case "const":
            return f"must be {rule!r}, not {value!r}"
        case "pattern":
            return pattern_message(value, rule)
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


def pattern_message(value: Any, pattern: str) -> str:
    """What is wrong with `value`, which `pattern` of a schema refused, in words."""
    if pattern == NAME_PATTERN:
        return (f"{value!r} is not a valid name: lower-case letters, digits and '-', "
                "starting with a letter, at most 63 characters")
    if pattern == IDENTIFIER_PATTERN:
        return f"{value!r} is not a valid name: letters, digits and '_', not starting with a digit"
    rule = _RULES.get(pattern)
    words = _WORDS.get(pattern)
    return ((rule(value) if rule else None) or (f"{value!r} {words}" if words else None)
            or f"{value!r} does not match the pattern {pattern}")


# What the other patterns of the schemas ask for, in words (tests/test_schemas.py checks
# that no pattern of a schema is left without them).
_WORDS: dict[str, str] = {
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$":
        "is not a handler: a Python function's name, or MODULE.FUNCTION (train, models.train)",
    r"^(min|max)\.[A-Za-z_][A-Za-z0-9_.-]*$":
        "is not a selector: write max.RESULT or min.RESULT (max.accuracy, min.loss)",
    r"^(node\.(id|hostname|role|platform\.os|platform\.arch|labels\.[A-Za-z0-9_.-]+)"
    r"|engine\.labels\.[A-Za-z0-9_.-]+)\s*(==|!=)\s*[^\s=!]+$":
        "is not a placement constraint: write ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE, the "
        "attribute one of node.id, node.hostname, node.role, node.platform.os, "
        "node.platform.arch, node.labels.NAME, engine.labels.NAME (node.labels.gpu==true)",
    r"^[A-Za-z_][A-Za-z0-9_-]*$":
        "is not a valid output name: letters, digits, '_' and '-', not starting with a "
        "digit or '-'",
    r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$":
        "is not a registry: HOST or HOST:PORT (registry.internal:5000)",
}


# The rules of runner/refs.py that the schemas state as patterns say what is wrong in their words.
_RULES: dict[str, Callable[[str], str | None]] = {
    refs.IMAGE_PATTERN: refs.image_problem,
    refs.PACKAGE_PATTERN: refs.package_problem,
    refs.REQUIREMENT_PATTERN: refs.requirement_problem,
    refs.ENV_VALUE_PATTERN: refs.env_value_problem,
    refs.SHARED_PATH_PATTERN: refs.shared_path_problem,
}


def _type_name(name: str) -> str:
    return {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
            "number": "a number", "boolean": "a boolean", "null": "empty"}.get(name, name)


def _dotted(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
