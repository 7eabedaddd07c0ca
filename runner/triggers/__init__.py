"""What starts runs without a person: a push (`on-push` and the hook that calls it),
schedules, and watching a working tree.

It may import every stage below it: project, plan, build, run and record.
"""
