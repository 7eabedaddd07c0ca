"""The function hub: ready-made functions a project copies in (`runyard hub`).

A hub is a git repository (a URL or a path) laid out as `functions/<name>/`, each
folder holding the function's `function.yaml` (with its version in
`labels.version`), its code and a README.md; runyard ships one inside the package
(`default/`), so the hub works offline. Reading a hub checks what it holds as
untrusted input (names, paths, links, sizes); adding a function writes project
files and checks the project afterwards.

It is a source of project files, between `project` and the command line: it
imports `runner.project` only (and `runner.errors`, `runner.git`).
"""
