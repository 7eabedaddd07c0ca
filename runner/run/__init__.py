"""Running functions: tasks, code snapshots, inputs and outputs, secrets, scratch,
the backends, hyper-parameter trials, pipelines, and reconciling lost runners.

It may import project, plan, build and record; never triggers, views or the CLI.
"""
