"""runyard's in-container runtime: `python3 entry.py SPEC_PATH` (or `--serve [CONTROL]`,
a fork server: see forkserver.py).

Runs one run described by the JSON spec the host wrote: calls a Python handler
(or a command) and leaves results.json, artifacts.json and, on failure,
error.json in the spec's outputs folder. Stdlib only, Python 3.9+, and it
imports nothing of the `runner` package: this folder is mounted read-only into
images that have neither runyard nor its dependencies installed.
"""

from __future__ import annotations

import sys

# First thing: this folder is read-only, and must stay clean when it is not.
sys.dont_write_bytecode = True

import importlib  # noqa: E402
import importlib.util  # noqa: E402
import os  # noqa: E402
from collections.abc import Callable  # noqa: E402

TYPE_CHECKING = False  # typing is not imported at run time: it costs each run's start
if TYPE_CHECKING:
    from typing import Any


# The name the runtime's modules are imported under: one that no user code takes.
PACKAGE = "_runyard_runtime"


def load_main() -> Callable[[list[str]], int]:
    """Import this folder as the package PACKAGE, and its `main`."""
    _load_package()
    main: Callable[[list[str]], int] = importlib.import_module(f"{PACKAGE}.main").main
    return main


def kernel_context(spec_path: str) -> Any:
    """The run context, made in a notebook's kernel by the cell the runtime injects
    (`runpy.run_path` of this file, then this function): see notebook.py."""
    _load_package()
    return importlib.import_module(f"{PACKAGE}.notebook").kernel_context(spec_path)


def _load_package() -> None:
    """Import this folder as the package PACKAGE, without putting it on sys.path.

    Python put the folder at sys.path[0]; off it goes, so user code never
    imports `entry`, `context` or the like from here instead of its own.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.spec_from_loader(PACKAGE, loader=None, is_package=True)
    assert spec is not None and spec.submodule_search_locations is not None
    spec.submodule_search_locations.append(here)
    sys.modules[PACKAGE] = importlib.util.module_from_spec(spec)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:  # a fork server: the local backend's, or a trial worker's
        main = load_main()
        control = sys.argv[2] if len(sys.argv) > 2 else None
        raise SystemExit(importlib.import_module(f"{PACKAGE}.forkserver").serve(main, control))
    raise SystemExit(load_main()(sys.argv))
