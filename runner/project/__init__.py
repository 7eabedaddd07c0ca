"""Load and check a project, from a folder or a git revision: YAML reading, the
schemas, the typed model, the checks across files, the small languages (units,
conditions, trials, selectors, schedules, references), the operator's policy and
the pure environment hash.

It imports nothing of the later stages: loading a project never builds or runs
anything (only `runner.errors` besides itself).
"""
