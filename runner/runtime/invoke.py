"""Calling a Python handler: import its code, inject its arguments, keep what it returns."""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable

from .context import RunContext
from .outputs import OutputStore
from .spec import RunError, Spec

TYPE_CHECKING = False  # typing is not imported at run time: it costs each run's start
if TYPE_CHECKING:
    from typing import Any

    Handler = Callable[..., Any]
_KEEP_DEFAULT = object()  # a marker: leave the parameter out, so its default applies


class HandlerError(RunError):
    """The code or the handler cannot be found or is not callable."""


class ArgumentError(RunError):
    """The handler needs an argument the run does not give."""


def run_python(spec: Spec, store: OutputStore, logger: logging.Logger) -> None:
    context = RunContext(spec, store, logger)
    os.chdir(spec.paths.work)
    handler = load_handler(spec)
    args, kwargs = bind_arguments(handler, spec.handler or "", context)
    value = handler(*args, **kwargs)
    if inspect.iscoroutine(value):
        import asyncio  # only for async handlers: it costs every run ~20 ms to import

        value = asyncio.run(value)
    store.log_return(value)


def load_handler(spec: Spec) -> Handler:
    """Put the code's import root on sys.path, import its module and find the handler."""
    code_root, code, handler = spec.paths.code, spec.code, spec.handler
    if code_root is None or code is None or handler is None:
        raise HandlerError("a Python function needs code, handler and paths.code")
    target = os.path.normpath(os.path.join(code_root, code))
    if os.path.basename(target) == "__init__.py":
        target = os.path.dirname(target)
    if os.path.isdir(target):
        return _load_from_folder(target, code_root, handler, code)
    if os.path.isfile(target) and target.endswith(".py"):
        module, root = file_module(target, code_root)
        _prepend_paths([root, os.path.dirname(target), code_root])
        return _find(_import(module, root, code), module, handler.split("."), code)
    raise HandlerError(f"code {code!r}: no Python file or package at {target}")


def _load_from_folder(target: str, code_root: str, handler: str, code: str) -> Handler:
    """A package (`churn`, handler `model.train`), or a plain folder of modules."""
    if target == code_root:  # the whole code: its modules are top-level
        _prepend_paths([code_root])
        return _find_in_package([], code_root, handler, code)
    root = os.path.dirname(target)
    is_package = os.path.isfile(os.path.join(target, "__init__.py"))
    # A plain folder is also a root, so its modules import each other as scripts would.
    _prepend_paths([root, code_root] if is_package else [root, target, code_root])
    return _find_in_package([os.path.basename(target)], root, handler, code)


def file_module(path: str, code_root: str) -> tuple[str, str]:
    """The module name of a .py file and its import root: above any enclosing packages."""
    folder, filename = os.path.split(path)
    parts = [filename[: -len(".py")]]
    while folder != code_root and os.path.isfile(os.path.join(folder, "__init__.py")):
        folder, package = os.path.split(folder)
        parts.insert(0, package)
    return ".".join(parts), folder


def _prepend_paths(folders: list[str]) -> None:
    for folder in reversed(list(dict.fromkeys(folders))):
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)


def _find_in_package(package: list[str], root: str, handler: str, code: str) -> Handler:
    """`module.func` in the package: the longest importable module prefix wins."""
    names = handler.split(".")
    shortest = 0 if package else 1
    for split in range(len(names) - 1, shortest - 1, -1):
        module = ".".join([*package, *names[:split]])
        try:
            imported = _import(module, root, code)
        except ModuleNotFoundError as exc:
            if split == shortest or exc.name != module:
                raise
            continue
        return _find(imported, module, names[split:], code)
    raise HandlerError(f"code {code!r}: handler {handler!r} must be written module.function")


def _import(module: str, root: str, code: str) -> Any:
    top = module.split(".")[0]
    loaded = sys.modules.get(top)
    if loaded is not None and not _lives_in(loaded, root):
        raise HandlerError(
            f"code {code!r}: the module name {top!r} is taken by a module Python has already "
            "loaded; rename the file or package"
        )
    return importlib.import_module(module)


def _lives_in(module: Any, root: str) -> bool:
    locations = [getattr(module, "__file__", None), *getattr(module, "__path__", [])]
    prefix = os.path.join(root, "")
    return any(
        isinstance(location, str) and os.path.abspath(location).startswith(prefix) for location in locations
    )


def _find(module: Any, module_name: str, names: list[str], code: str) -> Handler:
    found: Any = module
    for depth, name in enumerate(names):
        if not hasattr(found, name):
            where = ".".join([module_name, *names[:depth]])
            raise HandlerError(f"code {code!r}: handler {'.'.join(names)!r}: {where} has no {name!r}")
        found = getattr(found, name)
    if not callable(found):
        raise HandlerError(f"code {code!r}: handler {'.'.join(names)!r} is not callable")
    handler: Handler = found
    return handler


def bind_arguments(handler: Handler, label: str, context: RunContext) -> tuple[list[Any], dict[str, Any]]:
    """The handler's arguments, by parameter name: context, inputs, params, **kwargs."""
    try:
        parameters = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError) as exc:
        raise HandlerError(f"handler {label!r}: cannot read its signature ({exc})") from exc
    available: dict[str, Any] = {**context.parameters, **context.inputs}
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        value = _value_for(parameter, label, context, available)
        if parameter.kind is parameter.POSITIONAL_ONLY:
            args.append(value)
        elif value is not _KEEP_DEFAULT:
            kwargs[parameter.name] = value
    if any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
        named = {parameter.name for parameter in parameters}
        kwargs.update({name: value for name, value in available.items() if name not in named})
    return args, kwargs


def _value_for(
    parameter: inspect.Parameter, label: str, context: RunContext, available: dict[str, Any]
) -> Any:
    if parameter.name == "context":
        return context
    if parameter.name in available:
        return available[parameter.name]
    if parameter.default is parameter.empty:
        raise ArgumentError(_missing(label, parameter.name, context))
    # A positional-only parameter cannot be skipped when a later one is passed.
    return parameter.default if parameter.kind is parameter.POSITIONAL_ONLY else _KEEP_DEFAULT


def _missing(label: str, name: str, context: RunContext) -> str:
    return (
        f"handler {label}() needs argument {name!r}, but the run has no param or input "
        f"of that name (params: {', '.join(sorted(context.parameters)) or 'none'}; "
        f"inputs: {', '.join(sorted(context.inputs)) or 'none'})"
    )
