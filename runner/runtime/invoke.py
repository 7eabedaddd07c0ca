"""Calling a Python handler: import its code, inject its arguments, keep what it returns."""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Callable

from .context import RunContext, RunLog
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


def run_python(spec: Spec, store: OutputStore, log: RunLog) -> None:
    context = RunContext(spec, store, log)
    os.chdir(spec.paths.work)
    handler = load_handler(spec)
    args, kwargs = bind_arguments(handler, spec.handler or "", context)
    value = handler(*args, **kwargs)
    if isinstance(value, types.CoroutineType):
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


# A parameter's kinds, as inspect.Parameter names them.
POSITIONAL_ONLY, POSITIONAL_OR_KEYWORD, VAR_POSITIONAL, KEYWORD_ONLY, VAR_KEYWORD = (
    "POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD", "VAR_POSITIONAL", "KEYWORD_ONLY", "VAR_KEYWORD")
_EMPTY = object()  # no default
_CO_VARARGS, _CO_VARKEYWORDS = 0x04, 0x08  # code flags (inspect.CO_*)


def parameters(handler: Handler) -> list[tuple[str, str, Any]]:
    """The handler's parameters: (name, kind, default or _EMPTY), as inspect.signature has
    them. A plain function's are read from its code: importing inspect would cost every
    run's start some 5 ms; any other callable's (a class, a method, a wrapped function,
    functools.partial) come from inspect.signature."""
    if not isinstance(handler, types.FunctionType) or hasattr(handler, "__wrapped__") \
            or hasattr(handler, "__signature__"):
        return _signature(handler)
    code = handler.__code__
    names = code.co_varnames
    positional, keyword_only = code.co_argcount, code.co_kwonlyargcount
    defaults = handler.__defaults__ or ()
    first_default = positional - len(defaults)
    found = [(name, POSITIONAL_ONLY if index < code.co_posonlyargcount else POSITIONAL_OR_KEYWORD,
              defaults[index - first_default] if index >= first_default else _EMPTY)
             for index, name in enumerate(names[:positional])]
    after = positional + keyword_only
    if code.co_flags & _CO_VARARGS:
        found.append((names[after], VAR_POSITIONAL, _EMPTY))
        after += 1
    keyword_defaults = handler.__kwdefaults__ or {}
    found += [(name, KEYWORD_ONLY, keyword_defaults.get(name, _EMPTY))
              for name in names[positional:positional + keyword_only]]
    if code.co_flags & _CO_VARKEYWORDS:
        found.append((names[after], VAR_KEYWORD, _EMPTY))
    return found


def _signature(handler: Handler) -> list[tuple[str, str, Any]]:
    import inspect

    return [(p.name, p.kind.name, _EMPTY if p.default is p.empty else p.default)
            for p in inspect.signature(handler).parameters.values()]


def bind_arguments(handler: Handler, label: str, context: RunContext) -> tuple[list[Any], dict[str, Any]]:
    """The handler's arguments, by parameter name: context, inputs, params, **kwargs."""
    try:
        found = parameters(handler)
    except (TypeError, ValueError) as exc:
        raise HandlerError(f"handler {label!r}: cannot read its signature ({exc})") from exc
    available: dict[str, Any] = {**context.parameters, **context.inputs}
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for name, kind, default in found:
        if kind in (VAR_POSITIONAL, VAR_KEYWORD):
            continue
        value = _value_for(name, kind, default, label, context, available)
        if kind == POSITIONAL_ONLY:
            args.append(value)
        elif value is not _KEEP_DEFAULT:
            kwargs[name] = value
    if any(kind == VAR_KEYWORD for _, kind, _ in found):
        named = {name for name, _, _ in found}
        kwargs.update({name: value for name, value in available.items() if name not in named})
    return args, kwargs


def _value_for(name: str, kind: str, default: Any, label: str, context: RunContext,
               available: dict[str, Any]) -> Any:
    if name == "context":
        return context
    if name in available:
        return available[name]
    if default is _EMPTY:
        raise ArgumentError(_missing(label, name, context))
    # A positional-only parameter cannot be skipped when a later one is passed.
    return default if kind == POSITIONAL_ONLY else _KEEP_DEFAULT


def _missing(label: str, name: str, context: RunContext) -> str:
    return (
        f"handler {label}() needs argument {name!r}, but the run has no param or input "
        f"of that name (params: {', '.join(sorted(context.parameters)) or 'none'}; "
        f"inputs: {', '.join(sorted(context.inputs)) or 'none'})"
    )
