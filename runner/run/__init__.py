"""Running functions: tasks, code snapshots, inputs, backends and the executor."""
