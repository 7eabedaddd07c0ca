"""Notebook functions: a `.ipynb` run headless in a Python kernel, as papermill would.

The notebook gets two cells it did not have: at the top, one that makes `context`
(the same RunContext a handler gets, built in the kernel from the run's spec), and
after the cell tagged `parameters` (or at the top, after the context, without one)
one that sets each param and each input (a DataItem) by name. Results and artifacts
the notebook logs through `context` are the run's; the executed notebook and its
HTML rendering are artifacts `notebook` and `notebook-html`, also when a cell fails.

The kernel talks to this process over ZeroMQ: through Unix sockets in a private
folder of the run's temporary space when the path is short enough, else over TCP on
127.0.0.1; both work in a container without a network. Jupyter's and IPython's own
folders go there too: the container's root is read-only, and HOME is the work folder.
"""

from __future__ import annotations

import base64
import json
import keyword
import math
import os
import re
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Iterable, Mapping

from .context import RunContext, RunLog
from .outputs import OutputStore
from .spec import NOTEBOOK_SUFFIX, RunError, Spec, load_spec

TYPE_CHECKING = False  # typing is not imported at run time: it costs each run's start
if TYPE_CHECKING:
    from typing import Any

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"  # papermill's name for the cell it adds
CONTEXT_TAG = "runyard-context"
KERNEL_NAME = "python3"
NOTEBOOK_ARTIFACT = "notebook"
HTML_ARTIFACT = "notebook-html"
KERNEL_PACKAGES = ("nbclient", "nbformat", "nbconvert", "ipykernel")
_ENTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "entry.py")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SOCKET_PATH_MAX = 100  # a Unix socket path is at most 107 bytes; the kernel adds "-N"
MASK = "***"
_MIN_PIECE = 6  # as runner/run/secrets.py's MIN_PIECE
_URL_SAFE = str.maketrans("+/", "-_")


class NotebookError(RunError):
    """The notebook cannot be read, or one of its cells raised."""


def run_notebook(spec: Spec, spec_path: str, store: OutputStore, run_log: RunLog) -> None:
    # Jupyter's packages (KERNEL_PACKAGES) are in the image only when the function's code
    # is a notebook (the host adds them to its requirements), and the rest of the runtime
    # is stdlib-only and runs in images without them: so they are imported here, only here.
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, DeadKernelError
    except ImportError as exc:
        raise NotebookError(f"running a notebook needs {', '.join(KERNEL_PACKAGES)} ({exc}); "
                            "the function's image has them, this Python does not") from exc

    assert spec.paths.code is not None and spec.code is not None
    path = os.path.join(spec.paths.code, spec.code)
    original = read_notebook(path, spec.code)
    injected, origins = inject(original, spec_path, _ENTRY, spec.resolved, sorted(spec.inputs))
    notebook = nbformat.from_dict(injected)
    os.chdir(spec.paths.work)
    kernel_dirs = _kernel_environment(spec)
    started: list[int] = []  # the cells, as they start
    client = _client(NotebookClient, notebook, kernel_dirs, spec.paths.work, started.append)
    kernel_log = os.path.join(kernel_dirs, "kernel.log")
    try:
        # The kernel's own output goes to a file: its warnings, and a copy of what
        # subprocesses print, which it sends as cell output too (so the log has it once).
        with open(kernel_log, "wb") as log:
            client.execute(stdout=log, stderr=log)
    except CellExecutionError as error:
        print(_ANSI.sub("", str(error)), file=sys.stderr)
        where = _cell_label(started[-1] if started else None, origins, spec.code)
        raise NotebookError(f"{where} raised {error.ename}: {error.evalue}") from None
    except DeadKernelError:
        _print_tail(kernel_log)
        where = _cell_label(started[-1] if started else None, origins, spec.code)
        raise NotebookError(f"the kernel died while it ran {where}") from None
    except Exception:  # the kernel did not start, or stopped answering: what it said is the clue
        _print_tail(kernel_log)
        raise
    finally:
        store.load_results_file()  # what the kernel's context logged
        store.load_artifacts_file()
        _keep(nbformat.from_dict(mask(notebook, secret_forms(_secrets(spec)))), spec.code, store, run_log)


def _client(base: type[Any], notebook: Any, kernel_dirs: str, work: str,
            on_start: Callable[[int], None]) -> Any:
    """An nbclient NotebookClient (`base`, imported by the caller) that passes on what
    cells print as the kernel sends it, so the log follows the notebook as it runs."""

    class Client(base):  # type: ignore[misc]
        def output(self, outs: Any, msg: dict[str, Any], display_id: Any, cell_index: int) -> Any:
            _echo(msg)
            return super().output(outs, msg, display_id, cell_index)

    return Client(
        notebook, km=_kernel_manager(kernel_dirs), kernel_name=KERNEL_NAME, timeout=None,
        allow_errors=False, resources={"metadata": {"path": work}},
        # Every cell has run and its outputs are in: a graceful shutdown only costs seconds.
        shutdown_kernel="immediate",
        on_cell_start=lambda cell, cell_index: on_start(cell_index))


def _print_tail(path: str, lines: int = 30) -> None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            tail = handle.read().splitlines()[-lines:]
    except OSError:
        return
    if tail:
        print("the kernel's last words:", *tail, sep="\n", file=sys.stderr)


def read_notebook(path: str, label: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise NotebookError(f"cannot read the notebook {label}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise NotebookError(f"the notebook {label} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise NotebookError(f"the notebook {label} has no list of cells")
    return data


def inject(notebook: dict[str, Any], spec_path: str, entry: str, params: dict[str, Any],
           inputs: list[str]) -> tuple[dict[str, Any], list[int | None]]:
    """The notebook with the context cell first and the parameters cell after the one
    tagged `parameters` (else after the context cell); and, for each cell of the result,
    its index in the original (None for an injected one). Cells injected by an earlier
    run (a kept notebook committed again) are replaced, as papermill replaces its own."""
    kept = [(index, cell) for index, cell in enumerate(notebook["cells"])
            if not {INJECTED_TAG, CONTEXT_TAG} & set(cell_tags(cell))]
    cells = [cell for _, cell in kept]
    tagged = [position for position, cell in enumerate(cells) if PARAMETERS_TAG in cell_tags(cell)]
    after = tagged[0] + 1 if tagged else 0
    indexes = [index for index, _ in kept]
    origins: list[int | None] = [None, *indexes[:after], None, *indexes[after:]]
    with_ids = notebook.get("nbformat_minor", 0) >= 5  # cells have ids from format 4.5 on
    injected = [_code_cell(context_source(spec_path, entry), CONTEXT_TAG, with_ids), *cells[:after],
                _code_cell(parameters_source(params, inputs), INJECTED_TAG, with_ids), *cells[after:]]
    return {**notebook, "cells": injected}, origins


def cell_tags(cell: object) -> list[str]:
    metadata = cell.get("metadata") if isinstance(cell, dict) else None
    tags = metadata.get("tags") if isinstance(metadata, dict) else None
    return [tag for tag in tags if isinstance(tag, str)] if isinstance(tags, list) else []


def context_source(spec_path: str, entry: str) -> str:
    return ("# The run context, injected by runyard\n"
            f"context = __import__('runpy').run_path({entry!r}, run_name='_runyard_kernel')"
            f"['kernel_context']({spec_path!r})")


def parameters_source(params: dict[str, Any], inputs: list[str]) -> str:
    """Python that sets each param to its value and each input to its DataItem; a name
    that is no Python variable name is read with context.get_param or get_input only."""
    lines = ["# Parameters, injected by runyard"]
    for name, value in params.items():
        if _is_variable(name):
            lines.append(f"{name} = {python_literal(value)}")
        else:
            lines.append(f"# {name!r} is not a Python name: context.get_param({name!r})")
    for name in inputs:
        if _is_variable(name):
            lines.append(f"{name} = context.get_input({name!r})")
        else:
            lines.append(f"# {name!r} is not a Python name: context.get_input({name!r})")
    return "\n".join(lines)


def python_literal(value: Any) -> str:
    """A JSON value (as the spec holds params) written as Python source."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, dict):
        items = ", ".join(f"{python_literal(key)}: {python_literal(item)}" for key, item in value.items())
        return "{" + items + "}"
    if isinstance(value, list):
        return "[" + ", ".join(python_literal(item) for item in value) + "]"
    return repr(value)


def kernel_context(spec_path: str) -> RunContext:
    """The run context in the kernel: its store writes results.json and artifacts.json
    after each log, and the runtime's process reads them when the notebook has run."""
    spec = load_spec(spec_path)
    log = RunLog(spec.uid, sys.stderr)
    return RunContext(spec, OutputStore(spec.paths.outputs, log.warning, autosave=True), log)


def secret_forms(values: Iterable[str]) -> tuple[str, ...]:
    """Each secret in the forms the host masks it in, longest first: the same as
    runner/run/secrets.py's Secrets.forms (a test keeps them alike), for the runtime
    imports nothing of the host's."""
    found: set[str] = set()
    for value in values:
        lines = [line for line in value.splitlines() if len(line) >= _MIN_PIECE]
        for piece in dict.fromkeys([value, *lines]):
            encoded = piece.encode()
            found |= {piece, json.dumps(piece)[1:-1], urllib.parse.quote(piece, safe=""),
                      encoded.hex(), encoded.hex().upper(), repr(piece)[1:-1],
                      *_base64_forms(encoded)}
    return tuple(sorted((form for form in found if form), key=lambda form: (-len(form), form)))


def _base64_forms(data: bytes) -> set[str]:
    """base64 and base64url of `data` after 0, 1 or 2 other bytes: the characters that
    come from its bytes alone (as runner/run/secrets.py's)."""
    whole = base64.b64encode(data).decode().rstrip("=")
    found = {whole, whole.translate(_URL_SAFE)}
    for before, skip in ((0, 0), (1, 2), (2, 3)):
        text = base64.b64encode(bytes(before) + data).decode().rstrip("=")
        text = text[skip:len(text) - (1 if (before + len(data)) % 3 else 0)]
        if len(text) >= _MIN_PIECE:
            found |= {text, text.translate(_URL_SAFE)}
    return found


def mask(value: Any, forms: tuple[str, ...]) -> Any:
    """`value` (a notebook, or any JSON value) with every form of a secret as `***`: the
    executed notebook and its HTML are made by runyard, so they hide what the log hides."""
    if isinstance(value, str):
        for form in forms:
            value = value.replace(form, MASK)
        return value
    if isinstance(value, Mapping):
        return {key: mask(item, forms) for key, item in value.items()}
    if isinstance(value, list):
        return [mask(item, forms) for item in value]
    return value


def _secrets(spec: Spec) -> list[str]:
    """The values of the secrets the run was given (what the context's get_secret reads)."""
    values = []
    for name in spec.secrets if spec.paths.secrets else ():
        try:
            with open(os.path.join(spec.paths.secrets or "", name), encoding="utf-8") as handle:
                values.append(handle.read())
        except OSError:
            continue  # not given after all: nothing of it to mask
    return [value for value in values if value]


def _is_variable(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name) and name != "context"


def _code_cell(source: str, tag: str, with_id: bool) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": "code", "execution_count": None,
                            "metadata": {"tags": [tag]}, "outputs": [], "source": source}
    return {"id": tag, **cell} if with_id else cell


def _cell_label(index: int | None, origins: list[int | None], code: str) -> str:
    origin = origins[index] if index is not None and index < len(origins) else None
    if index is None:
        return f"the notebook {code}"
    if origin is None:
        return f"the cell runyard injected into {code}"
    return f"cell {origin + 1} of {code}"


def _kernel_environment(spec: Spec) -> str:
    """Jupyter's and IPython's folders in a private folder of the run's temporary space,
    and the code on the kernel's import path; returns that folder."""
    base = tempfile.mkdtemp(prefix="jupyter-")  # TMPDIR: the run's own scratch
    for variable, folder in (("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_DATA_DIR", "data"),
                             ("JUPYTER_CONFIG_DIR", "config"), ("IPYTHONDIR", "ipython"),
                             ("MPLCONFIGDIR", "matplotlib")):
        os.environ[variable] = os.path.join(base, folder)
    os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
    assert spec.paths.code is not None and spec.code is not None
    folder = os.path.dirname(os.path.join(spec.paths.code, spec.code))
    paths = [folder, spec.paths.code, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return base


def _kernel_manager(base: str) -> Any:
    # The async manager, as nbclient makes by default: with the blocking one, nbclient
    # never learns that a kernel died and waits for its reply for ever.
    from jupyter_client.manager import AsyncKernelManager  # with nbclient: see run_notebook

    sockets = os.path.join(base, "k")
    if len(sockets) <= _SOCKET_PATH_MAX:
        return AsyncKernelManager(kernel_name=KERNEL_NAME, transport="ipc", ip=sockets)
    return AsyncKernelManager(kernel_name=KERNEL_NAME, transport="tcp", ip="127.0.0.1")


def _echo(message: dict[str, Any]) -> None:
    """What a cell printed (also its subprocesses: the kernel captures their output too),
    passed on to the run's log."""
    content = message.get("content") or {}
    if message.get("msg_type") == "stream" and isinstance(content.get("text"), str):
        stream = sys.stderr if content.get("name") == "stderr" else sys.stdout
        stream.write(content["text"])


def _keep(notebook: Any, code: str, store: OutputStore, log: RunLog) -> None:
    """The executed notebook and its HTML rendering, as artifacts."""
    import nbformat
    from nbconvert import HTMLExporter

    stem = os.path.splitext(os.path.basename(code))[0]
    folder = tempfile.mkdtemp(prefix="notebook-")
    executed = os.path.join(folder, f"{stem}{NOTEBOOK_SUFFIX}")
    nbformat.write(notebook, executed)
    store.store_file(NOTEBOOK_ARTIFACT, executed, "notebook", "ipynb")
    try:
        html, _ = HTMLExporter().from_notebook_node(notebook)
    except Exception as exc:  # a rendering problem must not hide the run's own outcome
        log.warning(f"the notebook could not be rendered as HTML: {exc}")
        return
    rendered = os.path.join(folder, f"{stem}.html")
    with open(rendered, "w", encoding="utf-8") as handle:
        handle.write(html)
    store.store_file(HTML_ARTIFACT, rendered, "html", "html")
