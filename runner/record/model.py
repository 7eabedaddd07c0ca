"""The run record and the push record (DESIGN §3), typed, and their one way to YAML.

A record is a tree of frozen dataclasses whose fields are the keys of its YAML, in the
order they are written; an update makes a new record (`dataclasses.replace`,
`RunRecord.ended`). This module alone turns records into YAML (and into the dicts that
`--json` prints) and reads them back, checking every field against its type: a
truncated or hand-edited record is a RunyardError that names it, never a traceback.

Versions: a record says `apiVersion: runyard/v1`; one from another version is refused.
Earlier v1 writers left out fields that later ones write (spec.pipeline, run_key, tree
and code; params.trial, where a trial's values were in override; trigger.by;
status.runner, host and containers; an artifact's format; a push's received, finished
and reason). The migration: a field a record lacks reads as its default, and the record
renders as it was read, so `git show`, `--json` and a rewrite keep its shape.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, field, fields, replace
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any, ClassVar, Literal, Self, Union, cast, get_args, get_origin, get_type_hints

import yaml

from runner.errors import RunyardError
from runner.frozen import frozen

VERSION = "runyard/v1"
State = Literal["pending", "running", "completed", "failed", "aborted", "skipped"]
PushState = Literal["running", "completed", "nothing-to-run", "failed", "invalid", "refused",
                    "error"]
Mask = Callable[[Any], Any]  # a text or a structure of mappings and lists, masked

_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def dump(data: Mapping[str, Any]) -> bytes:
    """YAML as the results branch holds it: keys in their order, plain for `git show`."""
    return yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True).encode()


_STR, _MAP, _SEQ, _MERGE = (f"tag:yaml.org,2002:{name}" for name in ("str", "map", "seq", "merge"))


def load(raw: bytes) -> Any:
    """The data of a record's YAML, as safe loading makes it, built from the C parser's
    nodes without the constructor's bookkeeping for each one (reading records is most of
    what the report does). A node met again (an alias) is the object made the first time,
    so an alias bomb costs what its text costs, and data that contains itself is refused;
    a document with a merge key, a collection with a tag of its own, and every scalar
    that is not a string go through the safe constructor."""
    loader = _RecordLoader(raw)
    try:
        node = loader.get_single_node()
        if node is None or loader.merges:
            return None if node is None else loader.construct_document(node)
        return _built(node, loader, {})
    finally:
        loader.dispose()


class _RecordLoader(_Loader):  # type: ignore[misc,valid-type]  # C or Python, as installed
    merges = False  # whether a merge key (`<<`) was read

    def resolve(self, kind: type[yaml.Node], value: str, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            tag = _plain_tag(value)
            self.merges = self.merges or tag == _MERGE
            return tag
        return cast(str, super().resolve(kind, value, implicit))


@lru_cache(maxsize=1 << 14)
def _plain_tag(value: str) -> str:
    """The tag of a plain scalar (records repeat their keys and many values)."""
    resolver = yaml.resolver.Resolver()
    return cast(str, resolver.resolve(yaml.ScalarNode, value, (True, False)))  # type: ignore[no-untyped-call]


def _built(node: yaml.Node, loader: yaml.SafeLoader, made: dict[int, Any]) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return node.value if node.tag == _STR else loader.construct_object(node)
    if id(node) in made:
        if made[id(node)] is None:
            raise yaml.constructor.ConstructorError(
                None, None, "found data that contains itself, which no record holds",
                node.start_mark)
        return made[id(node)]
    made[id(node)] = None  # being built
    if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
        built: Any = {_built(key, loader, made): _built(value, loader, made)
                      for key, value in node.value}
    elif isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
        built = [_built(item, loader, made) for item in node.value]
    else:
        built = loader.construct_object(node, deep=True)
    made[id(node)] = built
    return built


def now() -> str:
    """This moment, as a run record writes times."""
    return _iso(datetime.now(UTC))


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


@frozen
class Part:
    """A mapping of a record as a dataclass: its fields are the mapping's keys, in order.

    `absent` names the fields left out of the mapping while they hold their default: for
    a part read from YAML the keys it lacked, so that it renders as it was read; else
    LEAVE_OUT, what runyard leaves out while it is unset.
    """

    LEAVE_OUT: ClassVar[frozenset[str]] = frozenset()
    absent: frozenset[str] | None = field(default=None, kw_only=True, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        left_out = self.LEAVE_OUT if self.absent is None else self.absent
        return {item.name: _plain(value) for item, value in self._values()
                if not (item.name in left_out and value == _default(item))}

    def masked(self, mask: Mask) -> Self:
        """With `mask` applied to every text and free-form value, each text then made one
        that YAML, JSON and git hold (see `writable`); the numbers runyard counted or
        measured itself (sizes, times, iterations, exit codes) stay numbers."""
        return replace(self, **{item.name: _masked(value, lambda v: writable(mask(v)))
                                for item, value in self._values()})

    @classmethod
    def sparse(cls, **values: Any) -> Self:
        """A part whose mapping holds the fields given only (the rest left out at their default)."""
        return cls(**values, absent=frozenset(item.name for item in fields(cls)) - {"absent", *values})

    @classmethod
    def read(cls, data: object, whose: str, where: str = "") -> Self:
        """The part that `data`, a mapping read from YAML, holds. Errors name the record by
        `whose` (`run UID`) and the part by `where` in it (`status.trials[2]`)."""
        if not isinstance(data, Mapping):
            raise _broken(whose, where, data, "a mapping")
        known, hints = _shape(cast(type, cls))  # mypy: a type[Self] is hashable too
        unknown = [key for key in data if key not in known]
        if unknown:
            raise RunyardError(f"the record of {whose} is broken: "
                               f"{_at(where, str(unknown[0]))} is not a field of it")
        values = {}
        for name, item in known.items():
            if name in data:
                values[name] = _convert(hints[name], data[name], whose, _at(where, name))
            elif _default(item) is MISSING:
                raise RunyardError(f"the record of {whose} is broken: {_at(where, name)} is missing")
        return cls(**values, absent=frozenset(known) - set(data))

    def _values(self) -> list[tuple[Field[Any], Any]]:
        return [(item, getattr(self, item.name)) for item in fields(self) if item.name != "absent"]


@cache
def _shape(part: type) -> tuple[dict[str, Field[Any]], dict[str, Any]]:
    """A part's fields by name and their types: worked out once a class, as every record
    read asks for them (get_type_hints alone took most of the time of reading a record)."""
    return ({item.name: item for item in fields(part) if item.name != "absent"},
            get_type_hints(part))


@frozen
class Document(Part):
    """A whole record: a file of the results branch, which starts with its version and kind."""

    KIND: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {"apiVersion": VERSION, "kind": self.KIND, **super().to_dict()}

    def to_yaml(self) -> bytes:
        return dump(self.to_dict())

    @classmethod
    def from_dict(cls, data: object, whose: str) -> Self:
        if not isinstance(data, Mapping):
            raise _broken(whose, "", data, "a mapping")
        version, kind = data.get("apiVersion"), data.get("kind")
        if version != VERSION:
            raise RunyardError(f"the record of {whose} is of version {version!r}: this runyard "
                               f"reads {VERSION}")
        if kind != cls.KIND:
            raise _broken(whose, "kind", kind, repr(cls.KIND))
        return cls.read({key: value for key, value in data.items()
                         if key not in ("apiVersion", "kind")}, whose)

    @classmethod
    def from_yaml(cls, raw: bytes, whose: str) -> Self:
        try:
            data = load(raw)
        except (yaml.YAMLError, TypeError, RecursionError) as error:
            raise RunyardError(f"the record of {whose} is broken: it is not YAML "
                               f"({' '.join(str(error).split())})") from error
        return cls.from_dict(data, whose)


# --- the run record ----------------------------------------------------------------------------


@frozen
class Metadata(Part):
    """Who the run is: uid, name, project, job, and where it sits among trials and attempts."""

    LEAVE_OUT = frozenset({"rerun_of"})
    uid: str
    name: str
    project: str
    job: str | None = None
    iteration: int = 0  # a trial's number; 0 for a parent or a plain run
    parent: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 1
    rerun_of: str | None = None  # the run this one repeats (`runyard rerun`)


@frozen
class Params(Part):
    """Parameters by level, as given, and `resolved`: what the handler received. `trial`
    holds a trial's own values (older records have them in `override`)."""

    LEAVE_OUT = frozenset({"trial"})
    project: Mapping[str, Any] = field(default_factory=dict)
    pipeline: Mapping[str, Any] = field(default_factory=dict)
    job: Mapping[str, Any] = field(default_factory=dict)
    override: Mapping[str, Any] = field(default_factory=dict)
    trial: Mapping[str, Any] = field(default_factory=dict)
    step: Mapping[str, Any] = field(default_factory=dict)
    resolved: Mapping[str, Any] = field(default_factory=dict)


@frozen
class RunInput(Part):
    """One input as the run read it."""

    uri: str
    hash: str | None = None
    size: int | None = None


@frozen
class Trigger(Part):
    """What started the run: `manual`, `push`, `schedule` or `api`; `by` whom (the person
    who ran it by hand, or the author of the pushed revision), where known."""

    LEAVE_OUT = frozenset({"ref", "detail", "by"})
    kind: str
    ref: str | None = None
    detail: str | None = None
    by: str | None = None


@frozen
class RunResources(Part):
    """The limits the run had: only those set are written."""

    LEAVE_OUT = frozenset({"cpu", "memory", "timeout", "gpus"})
    cpu: float | str | None = None
    memory: int | str | None = None
    timeout: float | str | None = None
    gpus: int | None = None


@frozen
class Spec(Part):
    """What was asked: function or pipeline, params, inputs, image, revision, trigger, resources."""

    LEAVE_OUT = frozenset({"tree", "code"})  # older records lack them
    function: str | None = None
    pipeline: str | None = None
    handler: str | None = None
    command: tuple[str, ...] | None = None
    run_key: str | None = None
    params: Params = field(default_factory=Params)
    inputs: Mapping[str, RunInput] = field(default_factory=dict)
    hyper: Mapping[str, Any] | None = None  # the job's search as given (runner.project.model.Hyper)
    image: str | None = None
    image_id: str | None = None
    env_hash: str | None = None
    revision: str = ""
    tree: str | None = None  # the revision's git tree
    code: Mapping[str, str | None] = field(default_factory=dict)  # the function's files: object ids
    dirty: bool = False
    trigger: Trigger = field(default_factory=lambda: Trigger("manual"))
    backend: str = "docker"
    resources: RunResources = field(default_factory=RunResources)


@frozen
class Artifact(Part):
    """An artifact of a run; `producer` is written in the newest-artifact index only."""

    LEAVE_OUT = frozenset({"producer"})
    key: str
    kind: str | None = None
    format: str | None = None
    hash: str | None = None
    size: int | None = None
    uri: str | None = None
    producer: str | None = None


@frozen
class TrialSummary(Part):
    """A trial as its parent's record lists it."""

    iteration: int
    uid: str
    state: State
    params: Mapping[str, Any] = field(default_factory=dict)
    results: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None


@frozen
class StepSummary(Part):
    """A pipeline's step as the pipeline's record lists it."""

    name: str
    uid: str
    state: State
    reason: str | None = None


@frozen
class Status(Part):
    """What happened: state and why, times, exit code, results, artifacts, trials or steps."""

    LEAVE_OUT = frozenset({"steps", "node", "service", "image_digest"})  # set by some runs alone
    state: State
    reason: str | None = None
    start: str | None = None
    end: str | None = None
    duration: float | None = None
    exit_code: int | None = None
    results: Mapping[str, Any] = field(default_factory=dict)
    artifacts: tuple[Artifact, ...] = ()
    error: str | None = None
    best_iteration: int | None = None
    trials: tuple[TrialSummary, ...] = ()
    logs: str | None = None
    log_truncated: bool = False
    skipped_for: str | None = None
    runner: str | None = None  # the runner process that started the run (runner.record.owner)
    host: str | None = None
    containers: tuple[str, ...] = ()
    steps: tuple[StepSummary, ...] = ()
    node: str | None = None  # the swarm backend's: where the run's task ran
    service: str | None = None  # ... the service id of the attempt
    image_digest: str | None = None  # ... and the image it ran, pinned by digest


@frozen
class RunRecord(Document):
    """One run: who it is, what was asked, what happened."""

    KIND = "run"
    metadata: Metadata
    spec: Spec
    status: Status

    @property
    def succeeded(self) -> bool:
        """Completed, or skipped because an identical run completed before (memoized)."""
        state = self.status.state
        return state == "completed" or (state == "skipped" and self.status.reason == "memoized")

    def ended(self, state: State, reason: str | None = None, error: str | None = None) -> RunRecord:
        """Ended now in `state`, and why; its duration counted from its start."""
        moment = datetime.now(UTC)
        start = self.status.start
        duration = None if start is None else round(
            (moment - datetime.fromisoformat(start)).total_seconds(), 3)
        return replace(self, status=replace(self.status, state=state, reason=reason, error=error,
                                            end=_iso(moment), duration=duration))


# --- the push record ---------------------------------------------------------------------------


@frozen
class PushRun(Part):
    """A run a push started, as the push record lists it."""

    job: str
    uid: str
    state: State


@frozen
class PushRecord(Document):
    """One revision pushed to one branch, and what the runner made of it. It is written
    `running` (naming its runner process, runner.record.owner) when the runner takes the
    push, and again when it is done: a push whose runner was killed is not taken for
    processed (runner.run.reconcile.reconcile_pushes)."""

    KIND = "push"
    LEAVE_OUT = frozenset({"runner"})
    revision: str
    old: str | None
    ref: str
    received: str | None = None
    finished: str | None = None
    status: PushState = "running"
    reason: str | None = None
    problems: tuple[str, ...] = ()
    plan: Mapping[str, Any] | None = None  # runner.plan.Plan.to_dict()
    runs: tuple[PushRun, ...] = ()
    runner: str | None = None  # the runner process that took the push


# --- reading and writing the fields ------------------------------------------------------------


def _default(item: Field[Any]) -> Any:
    if item.default is not MISSING:
        return item.default
    if item.default_factory is not MISSING:
        return item.default_factory()
    return MISSING


def _plain(value: Any) -> Any:
    """`value` as YAML and JSON write it: parts as mappings, tuples as lists, all copied
    (a YAML writer would mark an object met twice with an alias)."""
    if isinstance(value, Part):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def writable(value: Any) -> Any:
    """`value` (a text, or a structure of mappings and lists) with every lone surrogate of its
    texts written as its escape (`\\udcff`): what a file name's undecodable byte becomes in
    Python, and what a JSON `\\ud800` a run left gives; no UTF-8 encoder takes it."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode()
        return value
    if isinstance(value, Mapping):
        return {writable(key): writable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(writable(item) for item in value)
    return value


def _masked(value: Any, mask: Mask) -> Any:
    if isinstance(value, Part):
        return value.masked(mask)
    if isinstance(value, tuple) and any(isinstance(item, Part) for item in value):
        return tuple(_masked(item, mask) for item in value)
    if isinstance(value, Mapping) and any(isinstance(item, Part) for item in value.values()):
        return {mask(key): _masked(item, mask) for key, item in value.items()}
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return mask(value)


def _convert(hint: Any, value: object, whose: str, where: str) -> Any:
    """`value` as the field typed `hint` holds it, or the error that names the field."""
    if hint is Any:
        return value
    origin, args = _origin_args(hint)
    if isinstance(hint, type) and issubclass(hint, Part):
        return hint.read(value, whose, where)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [option for option in args if option is not type(None)]
        if len(options) == 1:
            return _convert(options[0], value, whose, where)
        if any(_is(option, value) for option in options):
            return value
    elif origin is Literal:
        if value in args:
            return value
    elif origin is tuple:
        if isinstance(value, list):
            return tuple(_convert(args[0], item, whose, f"{where}[{index}]")
                         for index, item in enumerate(value))
    elif origin is Mapping:
        if isinstance(value, Mapping) and args == (str, Any) and all(type(key) is str for key in value):
            return dict(value)  # free-form values (params, results): nothing to convert
        if isinstance(value, Mapping):
            return {_convert(args[0], key, whose, where): _convert(args[1], item, whose, _at(where, key))
                    for key, item in value.items()}
    elif _is(hint, value):
        return value
    raise _broken(whose, where, value, _expected(hint))


@cache
def _origin_args(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    return get_origin(hint), get_args(hint)


def _is(kind: Any, value: object) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(kind, type) and isinstance(value, kind)


def _expected(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_expected(option) for option in args)
    if origin is Literal:
        return "one of " + ", ".join(str(option) for option in args)
    names = {str: "text", int: "a whole number", float: "a number", bool: "true or false",
             type(None): "null", tuple: "a list", Mapping: "a mapping"}
    return names.get(origin or hint, "a mapping")


def _at(where: str, name: object) -> str:
    return f"{where}.{name}" if where else str(name)


def _broken(whose: str, where: str, value: object, expected: str) -> RunyardError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    what = f"{where} is {shown}" if where else f"it is {shown}"
    return RunyardError(f"the record of {whose} is broken: {what}, not {expected}")
