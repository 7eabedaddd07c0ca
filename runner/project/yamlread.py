"""Read one YAML file safely into plain data, keeping every node's position.

Only the YAML core types are accepted: a `!!python/...` or any other tag is an
error and is never constructed, and a core tag must fit its value (`!!int one`
is an error); an integer has at most MAX_INT_DIGITS digits. Duplicate keys,
several documents, oversized or non-UTF-8 files and alias bombs are refused before
any data is built.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import yaml

from runner.errors import Problem, ProjectInvalid
from runner.frozen import frozen

MAX_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64
MAX_INT_DIGITS = 100  # Python prints no int over 4300 digits; 0xfff... reads beyond that
MAX_INT = 10**MAX_INT_DIGITS

Path = tuple[str | int, ...]
Position = tuple[int, int]

_TAG = "tag:yaml.org,2002:"
_STR_TAG = f"{_TAG}str"
_TIMESTAMP_TAG = f"{_TAG}timestamp"  # kept as the text written, like a string
_CONSTRUCTED_TAGS = tuple(f"{_TAG}{name}" for name in ("int", "float", "bool", "null"))
# For each tag a scalar may carry: what its text must resolve to, and what that is.
_FITS = {
    f"{_TAG}int": ((f"{_TAG}int",), "an integer"),
    f"{_TAG}float": ((f"{_TAG}int", f"{_TAG}float"), "a number"),
    f"{_TAG}bool": ((f"{_TAG}bool",), "a boolean (true or false)"),
    f"{_TAG}null": ((f"{_TAG}null",), "null (~, null or nothing)"),
    _TIMESTAMP_TAG: ((_TIMESTAMP_TAG,), "a date or a time"),
}
_SEQ_TAG = f"{_TAG}seq"
_MAP_TAG = f"{_TAG}map"
_CORE_TAGS = frozenset({_STR_TAG, _SEQ_TAG, _MAP_TAG, *_FITS})
_MERGE_TAG = f"{_TAG}merge"
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_RESOLVED_MAX = 10_000  # remembered tags, for scalars of at most _RESOLVED_TEXT characters
_RESOLVED_TEXT = 100
_YAML_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """The safe loader, remembering which tag each plain scalar resolves to.

    Resolving runs a regular expression or two per node in Python, a third of
    the parse even with LibYAML; the answer depends only on the text (no path
    resolvers are registered), and the same short texts recur across files.
    """

    _resolved: dict[tuple[Any, Any, Any], str] = {}  # noqa: RUF012 (a shared cache)

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if self.yaml_path_resolvers or (isinstance(value, str) and len(value) > _RESOLVED_TEXT):
            return str(super().resolve(kind, value, implicit))
        key = (kind, value, implicit)
        tag = self._resolved.get(key)
        if tag is None:
            tag = str(super().resolve(kind, value, implicit))
            if len(self._resolved) < _RESOLVED_MAX:
                self._resolved[key] = tag
        return tag


@frozen
class Document:
    """A file's data and where each value (and each mapping key) stands in it.

    `lost` names the mappings that lack keys the file has or needs: a document
    that failed its schema keeps only its valid parts, so that the checks across
    files still run on them, and does not claim what it lost is absent.
    """

    file: str
    data: Any
    positions: Mapping[Path, Position]
    key_positions: Mapping[Path, Position]
    lost: frozenset[Path] = frozenset()

    def where(self, path: Path, *, key: bool = False) -> Position:
        """The position of `path`, or of its nearest ancestor that has one."""
        while True:
            table = self.key_positions if key and path in self.key_positions else self.positions
            if path in table:
                return table[path]
            if not path:
                return (1, 1)
            path = path[:-1]

    def problem(self, path: Path, message: str, *, key: bool = False) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, message)


def read_document(file: str, raw: bytes) -> Document:
    """Parse `raw` (the bytes of `file`); raise ProjectInvalid with one problem."""
    if len(raw) > MAX_BYTES:
        _fail(file, 1, 1, f"file is {len(raw)} bytes; the limit is {MAX_BYTES} (1 MiB)")
    text = _decode(file, raw)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as error:
        _fail(file, *_syntax_error(text, error))
    finally:
        loader.dispose()
    if node is None:
        _fail(file, 1, 1, "file is empty")
    return _Builder(file, loader).build(node)


def _syntax_error(text: str, error: yaml.YAMLError) -> tuple[int, int, str]:
    """Where a YAML error is, and what it is: a bad character where it stands (the
    error only gives an offset, in bytes or in characters depending on the parser),
    something left open at the end of the file where it was opened."""
    if isinstance(error, yaml.reader.ReaderError):
        return _bad_character(text, error)
    if not isinstance(error, yaml.MarkedYAMLError):
        return 1, 1, f"YAML error: {str(error).splitlines()[0]}"
    what = " ".join(part for part in (error.context, error.problem) if part)
    if "expected a single document" in what:
        what = "only one YAML document per file is allowed"
    mark, opened = error.problem_mark or error.context_mark, error.context_mark
    if mark is None:
        return 1, 1, f"YAML syntax error: {what}"
    end = _end(text)
    if (mark.line, mark.column) < end:
        return mark.line + 1, mark.column + 1, f"YAML syntax error: {what}"
    if opened is not None and (opened.line, opened.column) < end:
        return opened.line + 1, opened.column + 1, f"YAML syntax error: {what} (never closed)"
    line, col = _end(text.rstrip())
    return line + 1, col + 1, f"YAML syntax error: {what}"


def _end(text: str) -> Position:
    """The 0-based line and column just past the end of `text`, counted as YAML does."""
    lines = _YAML_BREAK.split(text)
    return len(lines) - 1, len(lines[-1])


def _bad_character(text: str, error: yaml.reader.ReaderError) -> tuple[int, int, str]:
    found = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if found is None:
        return 1, 1, f"YAML error: {str(error).splitlines()[0]}"
    index, char = found.start(), found.group()
    line = text.count("\n", 0, index) + 1
    col = index - text.rfind("\n", 0, index)
    hint = " (a terminal colour code, pasted?)" if char == "\x1b" else ""
    return line, col, f"the control character U+{ord(char):04X}{hint} is not allowed in YAML"


def _decode(file: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        col = error.start - raw.rfind(b"\n", 0, error.start)
        _fail(file, line, col, "file is not valid UTF-8")
    raise AssertionError("unreachable")


def _fail(file: str, line: int, col: int, message: str) -> NoReturn:
    raise ProjectInvalid([Problem(file, line, col, message)])


class _Builder:
    """Turns a composed node graph into plain data, counting every expanded node.

    This runs once per node of every file, so it is written for speed: tags are
    compared with constants and each scalar constructor is looked up once.
    """

    def __init__(self, file: str, constructor: yaml.SafeLoader) -> None:
        self.file = file
        self.nodes = 0
        self.positions: dict[Path, Position] = {}
        self.key_positions: dict[Path, Position] = {}
        self.construct = {
            tag: getattr(constructor, f"construct_yaml_{tag.removeprefix(_TAG)}")
            for tag in _CONSTRUCTED_TAGS
        }
        self.resolve: Callable[[Any, Any, Any], str] = constructor.resolve

    def build(self, node: yaml.Node) -> Document:
        data = self._value(node, ())
        return Document(self.file, data, self.positions, self.key_positions)

    def _value(self, node: yaml.Node, path: Path) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self._refuse(
                node, f"more than {MAX_NODES} values after alias expansion (an alias bomb?)"
            )
        if len(path) > MAX_DEPTH:
            self._refuse(node, f"nested deeper than {MAX_DEPTH} levels")
        mark = node.start_mark
        self.positions[path] = (mark.line + 1, mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                self._refuse_tag(node, "a list")
            value = self._value
            return [value(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        if node.tag != _MAP_TAG:
            self._refuse_tag(node, "a mapping")
        result: dict[str, Any] = {}
        key_positions = self.key_positions
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self._refuse(key_node, "merge keys (<<) are not supported; write the keys out")
            key = self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self._refuse(key_node, "mapping keys must be strings")
            key_path = (*path, key)
            if key in result:
                line, _ = key_positions[key_path]
                self._refuse(key_node, f"duplicate key {key!r} (first at line {line})")
            mark = key_node.start_mark
            key_positions[key_path] = (mark.line + 1, mark.column + 1)
            result[key] = self._value(value_node, key_path)
        return result

    def _scalar(self, node: yaml.Node) -> Any:
        tag = node.tag
        if tag == _STR_TAG:
            return str(node.value)
        fits = _FITS.get(tag)
        if fits is None:
            self._refuse_tag(node, "a single value")
        resolved, noun = fits
        if self.resolve(yaml.ScalarNode, node.value, (True, False)) not in resolved:
            self._refuse(node, f"{node.value!r} is not {noun}, as its tag {_short(tag)} says")
        construct = self.construct.get(tag)
        if construct is None:
            return str(node.value)
        try:
            value = construct(node)
        except ValueError:  # Python reads no decimal integer of over 4300 digits
            value = MAX_INT
        if isinstance(value, int) and abs(value) >= MAX_INT:
            self._refuse(node, f"an integer of over {MAX_INT_DIGITS} digits is not allowed; quote it "
                               "to keep it as text")
        return value

    def _refuse_tag(self, node: yaml.Node, what: str) -> NoReturn:
        tag = _short(node.tag)
        if node.tag in _CORE_TAGS:
            self._refuse(node, f"the tag {tag} does not fit {what}")
        self._refuse(node, f"tag {tag!r} is not allowed; only plain YAML values are")

    def _refuse(self, node: yaml.Node, message: str) -> NoReturn:
        line, col = _position(node)
        _fail(self.file, line, col, message)


def _position(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _short(tag: str) -> str:
    """`!!int` for the core tag `tag:yaml.org,2002:int`; any other tag as written."""
    return f"!!{tag.removeprefix(_TAG)}" if tag.startswith(_TAG) else tag
