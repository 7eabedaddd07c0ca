"""Hyper-parameters expanded into trials: one dict of parameter values per trial.

* grid: every combination, in the order of the params mapping, the last param
  varying fastest;
* list: the i-th values of every param together (all lists equally long);
* random: `max_trials` (default 10) distinct combinations of the grid, drawn
  with a generator seeded from `repr(seed)`, so the same seed gives the same
  trials in every process (`None` is a seed like any other).

Combinations matching an `exclude` entry are removed first (an entry matches a
trial when each of its keys has an equal value in the trial), then the result
is capped at `max_trials`.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final, TypeGuard

STRATEGIES: Final = ("grid", "list", "random")
DEFAULT_RANDOM_TRIALS: Final = 10
# Random search over a grid up to this size lists the grid; beyond it, it draws indices.
_LISTED_GRID_LIMIT: Final = 100_000
_DRAWS_PER_TRIAL: Final = 1000
MAX_TRIALS: Final = 100_000  # a job's trials, each a run and a record
# Combinations a grid or list is searched through for its trials (~1 s), whatever excludes them.
_SEARCHED_LIMIT: Final = 1_000_000

Trial = dict[str, object]
Values = dict[str, tuple[object, ...]]


def expand_trials(
    strategy: str,
    params: Mapping[str, Sequence[object]],
    *,
    exclude: Sequence[Mapping[str, object]] = (),
    max_trials: int | None = None,
    seed: object = None,
) -> list[Trial]:
    """The trials of a hyper-parameter job; ValueError for an impossible specification."""
    values = _values(params)
    cap = _cap(max_trials)
    excludes = _excludes(exclude)
    if strategy == "random":
        count = DEFAULT_RANDOM_TRIALS if cap is None else cap
        return _sample(values, excludes, count, random.Random(repr(seed)))
    if strategy == "grid":
        trials = _grid(values)
    elif strategy == "list":
        trials = _zipped(values)
    else:
        raise ValueError(f"unknown hyper strategy {strategy!r}: use grid, list or random")
    return _kept(trials, excludes, cap)


def _kept(trials: Iterator[Trial], excludes: list[Mapping[str, object]],
          cap: int | None) -> list[Trial]:
    """The trials not excluded, up to `cap`: never more than MAX_TRIALS, and never more than
    _SEARCHED_LIMIT combinations searched for them (a grid of 10**12, all but a few excluded)."""
    limit = min(cap or MAX_TRIALS + 1, MAX_TRIALS + 1)
    kept: list[Trial] = []
    for searched, trial in enumerate(trials, 1):
        if not _excluded(trial, excludes):
            kept.append(trial)
            if len(kept) == limit:
                break
        if searched == _SEARCHED_LIMIT and next(trials, None) is not None:
            raise ValueError(f"the exclude entries remove almost every combination: the first "
                             f"{_SEARCHED_LIMIT} hold {len(kept)} trials, and more are too many to search")
    if len(kept) > MAX_TRIALS:
        raise ValueError(_too_many(None))
    return kept


def check_hyper(
    strategy: str, params: Mapping[str, object], exclude: Sequence[object] = (),
    max_trials: object = None,
) -> list[str]:
    """Every problem of a hyper specification, as sentences for the user; never raises."""
    problems: list[str] = []
    if strategy not in STRATEGIES:
        problems.append(f"unknown hyper strategy {strategy!r}: use grid, list or random")
    if not params:
        problems.append("hyper has no params: give each param a list of values")
    lists = {name: value for name, value in params.items() if _is_list(value)}
    problems.extend(_param_problems(params))
    count = math.prod(map(len, lists.values())) if strategy == "grid" else \
        max(map(len, lists.values()), default=0) if strategy == "list" else 0
    capped = isinstance(max_trials, int) and max_trials <= MAX_TRIALS
    if count > MAX_TRIALS and not capped:
        problems.append(f"{_too_many(count)}: give max_trials, or fewer values")
    if strategy == "list" and len({len(value) for value in lists.values()}) > 1:
        problems.append(_unequal_lengths(lists))
    for number, entry in enumerate(exclude, start=1):
        problems.extend(_exclude_problems(number, entry, params))
    return problems


def _values(params: Mapping[str, Sequence[object]]) -> Values:
    if not params:
        raise ValueError("hyper has no params: give each param a list of values")
    problem = next(_param_problems(params), None)
    if problem is not None:
        raise ValueError(problem)
    return {name: tuple(values) for name, values in params.items()}


def _cap(max_trials: int | None) -> int | None:
    if max_trials is None:
        return None
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ValueError(f"max_trials must be a whole number of at least 1, not {max_trials!r}")
    return max_trials


def _excludes(exclude: Sequence[Mapping[str, object]]) -> list[Mapping[str, object]]:
    for number, entry in enumerate(exclude, start=1):
        if not isinstance(entry, Mapping):
            raise ValueError(f"exclude entry {number} is {entry!r}, not a mapping of param values")
    return list(exclude)


def _grid(values: Values) -> Iterator[Trial]:
    names = list(values)
    for combination in itertools.product(*values.values()):
        yield dict(zip(names, combination, strict=True))


def _zipped(values: Values) -> Iterator[Trial]:
    if len({len(options) for options in values.values()}) > 1:
        raise ValueError(_unequal_lengths(values))
    names = list(values)
    for combination in zip(*values.values(), strict=True):
        yield dict(zip(names, combination, strict=True))


def _sample(
    values: Values, excludes: list[Mapping[str, object]], count: int, generator: random.Random
) -> list[Trial]:
    total = math.prod(len(options) for options in values.values())
    if total > _LISTED_GRID_LIMIT:
        return _draw(values, excludes, count, generator)
    allowed = [trial for trial in _grid(values) if not _excluded(trial, excludes)]
    if len(allowed) <= count:
        generator.shuffle(allowed)
        return allowed
    return generator.sample(allowed, count)


def _draw(
    values: Values, excludes: list[Mapping[str, object]], count: int, generator: random.Random
) -> list[Trial]:
    """`count` distinct trials drawn by grid index, for grids too large to list."""
    total = math.prod(len(options) for options in values.values())
    chosen: dict[int, Trial] = {}
    for _ in range(count * _DRAWS_PER_TRIAL):
        index = generator.randrange(total)
        trial = _trial_at(values, index)
        if index not in chosen and not _excluded(trial, excludes):
            chosen[index] = trial
            if len(chosen) == count:
                return list(chosen.values())
    raise ValueError(
        f"could not draw {count} trials: the exclude entries remove almost every combination"
    )


def _trial_at(values: Values, index: int) -> Trial:
    """The grid's `index`-th trial (the last param varying fastest)."""
    trial: Trial = {}
    for name in reversed(values):
        index, position = divmod(index, len(values[name]))
        trial[name] = values[name][position]
    return {name: trial[name] for name in values}


def _excluded(trial: Trial, excludes: Iterable[Mapping[str, object]]) -> bool:
    return any(
        all(key in trial and _same(trial[key], value) for key, value in entry.items())
        for entry in excludes
    )


def _same(left: object, right: object) -> bool:
    # True == 1 in Python; a flag must not exclude a count.
    return isinstance(left, bool) == isinstance(right, bool) and left == right


def _is_list(value: object) -> TypeGuard[Sequence[object]]:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _param_problems(params: Mapping[str, object]) -> Iterator[str]:
    for name, value in params.items():
        if not _is_list(value):
            yield f"hyper param '{name}' must be a list of values, e.g. [0.01, 0.1], not {value!r}"
        elif not value:
            yield f"hyper param '{name}' has no values, so there are no trials"


def _too_many(count: int | None) -> str:
    """`count` trials (None: more than can be counted) are too many for a job."""
    shown = "more" if count is None else f"{count:.3g}" if count > 10**9 else f"{count}"
    return f"the hyper params make {shown} trials, over the {MAX_TRIALS} a job may have"


def _unequal_lengths(lists: Mapping[str, Sequence[object]]) -> str:
    counts = ", ".join(f"'{name}' has {len(values)}" for name, values in lists.items())
    return f"the list strategy needs lists of equal length: {counts}"


def _exclude_problems(number: int, entry: object, params: Mapping[str, object]) -> Iterator[str]:
    if not isinstance(entry, Mapping):
        yield f"exclude entry {number} is {entry!r}, not a mapping of param values"
        return
    if not entry:
        yield f"exclude entry {number} is empty, so it excludes every trial"
    for key, value in entry.items():
        options = params.get(key)
        if key not in params:
            known = ", ".join(f"'{name}'" for name in params) or "none"
            yield f"exclude entry {number} names '{key}', which is not a hyper param ({known})"
        elif _is_list(options) and not any(_same(option, value) for option in options):
            yield (
                f"exclude entry {number}: {value!r} is not one of the values of '{key}', "
                "so the entry excludes nothing"
            )
