from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.project.trials import DEFAULT_RANDOM_TRIALS, check_hyper, expand_trials

PARAMS: dict[str, Sequence[object]] = {"lr": [0.01, 0.1], "depth": [3, 5, 8]}


def pairs(trials: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [tuple(trial.values()) for trial in trials]


# --- grid ----------------------------------------------------------------------------------


def test_grid_is_the_product_with_the_last_param_fastest() -> None:
    trials = expand_trials("grid", PARAMS)
    assert trials == [
        {"lr": 0.01, "depth": 3},
        {"lr": 0.01, "depth": 5},
        {"lr": 0.01, "depth": 8},
        {"lr": 0.1, "depth": 3},
        {"lr": 0.1, "depth": 5},
        {"lr": 0.1, "depth": 8},
    ]
    assert all(list(trial) == ["lr", "depth"] for trial in trials)


def test_grid_follows_the_mapping_order() -> None:
    trials = expand_trials("grid", {"depth": [3, 5], "lr": [0.01, 0.1]})
    assert pairs(trials) == [(3, 0.01), (3, 0.1), (5, 0.01), (5, 0.1)]


def test_grid_exclude_a_full_combination() -> None:
    trials = expand_trials("grid", PARAMS, exclude=[{"lr": 0.01, "depth": 8}])
    assert {"lr": 0.01, "depth": 8} not in trials
    assert len(trials) == 5


def test_grid_exclude_a_subset_of_params() -> None:
    trials = expand_trials("grid", PARAMS, exclude=[{"depth": 5}])
    assert pairs(trials) == [(0.01, 3), (0.01, 8), (0.1, 3), (0.1, 8)]


def test_grid_several_excludes() -> None:
    trials = expand_trials("grid", PARAMS, exclude=[{"depth": 5}, {"lr": 0.1, "depth": 3}])
    assert pairs(trials) == [(0.01, 3), (0.01, 8), (0.1, 8)]


def test_exclude_naming_an_unknown_key_excludes_nothing() -> None:
    assert expand_trials("grid", PARAMS, exclude=[{"momentum": 0.9}]) == expand_trials(
        "grid", PARAMS
    )
    # One unknown key spoils the whole entry: a trial has no value to match it.
    assert len(expand_trials("grid", PARAMS, exclude=[{"depth": 5, "momentum": 0.9}])) == 6


def test_exclude_does_not_confuse_booleans_and_numbers() -> None:
    params: dict[str, Sequence[object]] = {"flag": [True, False], "n": [1, 0]}
    trials = expand_trials("grid", params, exclude=[{"n": True}, {"flag": 1}])
    assert len(trials) == 4
    assert len(expand_trials("grid", params, exclude=[{"flag": True, "n": 1}])) == 3


def test_exclude_compares_ints_and_floats_by_value() -> None:
    assert len(expand_trials("grid", {"x": [1, 2]}, exclude=[{"x": 1.0}])) == 1


def test_empty_exclude_entry_excludes_everything() -> None:
    assert expand_trials("grid", PARAMS, exclude=[{}]) == []


def test_grid_max_trials_caps_after_excluding() -> None:
    trials = expand_trials("grid", PARAMS, exclude=[{"depth": 3}], max_trials=3)
    assert pairs(trials) == [(0.01, 5), (0.01, 8), (0.1, 5)]
    assert len(expand_trials("grid", PARAMS, max_trials=100)) == 6


def test_grid_with_a_cap_does_not_build_the_whole_product() -> None:
    huge = {f"p{i}": list(range(10)) for i in range(12)}  # 10**12 combinations
    trials = expand_trials("grid", huge, max_trials=2)
    assert trials == [
        {f"p{i}": 0 for i in range(12)},
        {**{f"p{i}": 0 for i in range(11)}, "p11": 1},
    ]


def test_a_job_has_at_most_max_trials_trials() -> None:
    """A grid or list of more trials than a job may have is refused when checked (unless
    max_trials keeps it within) and when expanded, before it is listed."""
    huge = {f"p{i}": list(range(10)) for i in range(12)}
    assert any("1e+12 trials, over the 100000" in p for p in check_hyper("grid", huge))
    assert not any("trials, over" in p for p in check_hyper("grid", huge, max_trials=5))
    assert any("over the" in p for p in check_hyper("grid", huge, max_trials=10**9))
    assert any("100001 trials" in p for p in check_hyper("list", {"x": list(range(100_001))}))
    with pytest.raises(ValueError, match="more trials, over the 100000"):
        expand_trials("grid", huge)
    with pytest.raises(ValueError, match="more trials, over the 100000"):
        expand_trials("grid", huge, max_trials=10**9)


def test_excludes_that_leave_almost_nothing_of_a_huge_grid_end_the_search() -> None:
    huge = {f"p{i}": list(range(10)) for i in range(12)}
    every = [{"p0": value} for value in range(10)]
    with pytest.raises(ValueError, match="exclude entries remove almost every combination"):
        expand_trials("grid", huge, exclude=every, max_trials=1)
    last_but_one = [{"p11": value} for value in range(9)]  # what is left comes early on
    assert expand_trials("grid", huge, exclude=last_but_one, max_trials=1) == [
        {**{f"p{i}": 0 for i in range(11)}, "p11": 9}]


def test_values_may_be_any_sequence_and_any_type() -> None:
    trials = expand_trials("grid", {"opt": ("adam", "sgd"), "cfg": [{"a": 1}, None]})
    assert pairs(trials) == [("adam", {"a": 1}), ("adam", None), ("sgd", {"a": 1}), ("sgd", None)]


def test_trials_are_fresh_dicts() -> None:
    trials = expand_trials("grid", PARAMS)
    trials[0]["lr"] = 99
    assert expand_trials("grid", PARAMS)[0]["lr"] == 0.01


# --- list ----------------------------------------------------------------------------------


def test_list_takes_the_ith_values_together() -> None:
    trials = expand_trials("list", {"lr": [0.01, 0.1, 1.0], "depth": [3, 5, 8]})
    assert pairs(trials) == [(0.01, 3), (0.1, 5), (1.0, 8)]


def test_list_excludes_and_caps() -> None:
    params: dict[str, Sequence[object]] = {"lr": [0.01, 0.1, 1.0, 10.0], "depth": [3, 5, 8, 13]}
    trials = expand_trials("list", params, exclude=[{"depth": 5}], max_trials=2)
    assert pairs(trials) == [(0.01, 3), (1.0, 8)]


def test_list_needs_equal_lengths() -> None:
    with pytest.raises(ValueError) as caught:
        expand_trials("list", PARAMS)
    assert (
        str(caught.value)
        == "the list strategy needs lists of equal length: 'lr' has 2, 'depth' has 3"
    )


# --- random --------------------------------------------------------------------------------


BIG: dict[str, Sequence[object]] = {"a": list(range(10)), "b": list(range(10)), "c": ["x", "y"]}


def test_random_draws_distinct_trials_from_the_grid() -> None:
    trials = expand_trials("random", BIG, max_trials=15, seed=7)
    assert len(trials) == 15
    assert len(set(pairs(trials))) == 15
    grid = pairs(expand_trials("grid", BIG))
    assert all(pair in grid for pair in pairs(trials))


def test_random_defaults_to_ten_trials() -> None:
    assert len(expand_trials("random", BIG, seed=1)) == DEFAULT_RANDOM_TRIALS == 10


def test_random_is_stable_for_a_seed_and_varies_between_seeds() -> None:
    first = expand_trials("random", BIG, max_trials=5, seed="exp-1")
    assert expand_trials("random", BIG, max_trials=5, seed="exp-1") == first
    assert expand_trials("random", BIG, max_trials=5, seed="exp-2") != first
    # The seed is used through repr(): 1 and "1" are different seeds.
    assert expand_trials("random", BIG, max_trials=5, seed=1) != expand_trials(
        "random", BIG, max_trials=5, seed="1"
    )
    assert expand_trials("random", BIG, max_trials=5) == expand_trials("random", BIG, max_trials=5)


_IN_ANOTHER_PROCESS = """
import json, sys
from runner.project.trials import expand_trials
big = {"a": list(range(10)), "b": list(range(10)), "c": ["x", "y"]}
huge = {f"p{i}": list(range(10)) for i in range(8)}
print(json.dumps([
    expand_trials("random", big, max_trials=5, seed=("run", 3)),
    expand_trials("random", huge, max_trials=3, seed="s"),
]))
"""


def test_random_gives_the_same_trials_in_every_process() -> None:
    huge = {f"p{i}": list(range(10)) for i in range(8)}
    here = [
        expand_trials("random", BIG, max_trials=5, seed=("run", 3)),
        expand_trials("random", huge, max_trials=3, seed="s"),
    ]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": root}
        output = subprocess.run(
            [sys.executable, "-c", _IN_ANOTHER_PROCESS],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(output) == here


def test_random_returns_the_whole_grid_shuffled_when_it_is_small() -> None:
    trials = expand_trials("random", PARAMS, max_trials=20, seed=3)
    assert sorted(pairs(trials)) == sorted(pairs(expand_trials("grid", PARAMS)))
    shuffles = {tuple(pairs(expand_trials("random", PARAMS, seed=seed))) for seed in range(10)}
    assert len(shuffles) > 1


def test_random_excludes_before_sampling() -> None:
    trials = expand_trials("random", PARAMS, exclude=[{"depth": 5}], max_trials=4, seed=0)
    assert len(trials) == 4
    assert all(trial["depth"] != 5 for trial in trials)
    small = expand_trials("random", PARAMS, exclude=[{"lr": 0.1}], max_trials=5, seed=0)
    assert sorted(pairs(small)) == [(0.01, 3), (0.01, 5), (0.01, 8)]


def test_random_over_a_grid_too_large_to_list() -> None:
    huge = {f"p{i}": list(range(10)) for i in range(9)}  # 10**9 combinations
    trials = expand_trials("random", huge, exclude=[{"p0": 0}], max_trials=50, seed="big")
    assert len(trials) == 50
    assert len({tuple(trial.values()) for trial in trials}) == 50
    assert all(list(trial) == list(huge) and trial["p0"] != 0 for trial in trials)
    assert expand_trials("random", huge, exclude=[{"p0": 0}], max_trials=50, seed="big") == trials


def test_random_over_a_huge_grid_that_excludes_nearly_everything() -> None:
    huge = {f"p{i}": list(range(10)) for i in range(9)}
    with pytest.raises(ValueError, match="could not draw 2 trials"):
        expand_trials("random", huge, exclude=[{"p0": v} for v in range(10)], max_trials=2)


@given(
    st.lists(st.integers(1, 4), min_size=1, max_size=4),
    st.integers(1, 30),
    st.integers(),
)
def test_random_properties(sizes: list[int], count: int, seed: int) -> None:
    params = {f"p{i}": list(range(size)) for i, size in enumerate(sizes)}
    trials = expand_trials("random", params, max_trials=count, seed=seed)
    total = len(list(itertools.product(*params.values())))
    assert len(trials) == min(count, total)
    assert len(set(pairs(trials))) == len(trials)


# --- argument errors -----------------------------------------------------------------------


@pytest.mark.parametrize("max_trials", [0, -1, True, 2.5, "3"])
def test_max_trials_must_be_a_positive_whole_number(max_trials: object) -> None:
    with pytest.raises(ValueError) as caught:
        expand_trials("grid", PARAMS, max_trials=max_trials)  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"max_trials must be a whole number of at least 1, not {max_trials!r}"
    )


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError) as caught:
        expand_trials("bayes", PARAMS)
    assert str(caught.value) == "unknown hyper strategy 'bayes': use grid, list or random"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "hyper has no params: give each param a list of values"),
        ({"lr": "0.1"}, "hyper param 'lr' must be a list of values, e.g. [0.01, 0.1], not '0.1'"),
        ({"lr": 0.1}, "hyper param 'lr' must be a list of values, e.g. [0.01, 0.1], not 0.1"),
        ({"lr": []}, "hyper param 'lr' has no values, so there are no trials"),
    ],
)
@pytest.mark.parametrize("strategy", ["grid", "list", "random"])
def test_bad_params(strategy: str, params: Mapping[str, Sequence[object]], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        expand_trials(strategy, params)
    assert str(caught.value) == message


def test_exclude_entries_must_be_mappings() -> None:
    with pytest.raises(ValueError, match="exclude entry 2 is 5, not a mapping"):
        expand_trials("grid", PARAMS, exclude=[{"lr": 0.1}, 5])  # type: ignore[list-item]


# --- check_hyper ---------------------------------------------------------------------------


def test_check_hyper_accepts_a_good_specification() -> None:
    assert check_hyper("grid", PARAMS, [{"lr": 0.01, "depth": 8}]) == []
    assert check_hyper("list", {"a": [1, 2], "b": [3, 4]}) == []
    assert check_hyper("random", PARAMS, []) == []


def test_check_hyper_reports_every_problem() -> None:
    problems = check_hyper(
        "list",
        {"a": [1, 2], "b": [1], "c": "x", "d": []},
        [{"z": 1}, {}, {"a": 5}, 3, {"c": "x"}],
    )
    assert problems == [
        "hyper param 'c' must be a list of values, e.g. [0.01, 0.1], not 'x'",
        "hyper param 'd' has no values, so there are no trials",
        "the list strategy needs lists of equal length: 'a' has 2, 'b' has 1, 'd' has 0",
        "exclude entry 1 names 'z', which is not a hyper param ('a', 'b', 'c', 'd')",
        "exclude entry 2 is empty, so it excludes every trial",
        "exclude entry 3: 5 is not one of the values of 'a', so the entry excludes nothing",
        "exclude entry 4 is 3, not a mapping of param values",
    ]


def test_check_hyper_reports_strategy_and_missing_params() -> None:
    assert check_hyper("bayes", {}, [{"lr": 1}]) == [
        "unknown hyper strategy 'bayes': use grid, list or random",
        "hyper has no params: give each param a list of values",
        "exclude entry 1 names 'lr', which is not a hyper param (none)",
    ]


def test_check_hyper_lengths_matter_only_for_list() -> None:
    assert check_hyper("grid", PARAMS, []) == []
    assert check_hyper("list", PARAMS, []) == [
        "the list strategy needs lists of equal length: 'lr' has 2, 'depth' has 3"
    ]


def test_check_hyper_value_check_respects_booleans() -> None:
    assert check_hyper("grid", {"flag": [True, False]}, [{"flag": 1}]) == [
        "exclude entry 1: 1 is not one of the values of 'flag', so the entry excludes nothing"
    ]


def test_check_hyper_never_raises_on_odd_input() -> None:
    assert check_hyper("grid", {"a": None, "b": 3}, [None, "x", {"a": 1}])
