"""Checks that cross files: references, code and handlers, DAGs, expressions."""

from __future__ import annotations

import ast
import posixpath
import re
from collections.abc import Iterable

from runner.errors import Problem, did_you_mean
from runner.project import notebooks, refs, trials, when
from runner.project.condition import ConditionError, parse_condition
from runner.project.model import Function, Job, Pipeline, Project, is_repo_path, step_ref
from runner.project.source import ProjectSource, SourceError
from runner.project.yamlread import Document, Path


def check_project(project: Project, source: ProjectSource,
                  unchecked: frozenset[str] = frozenset()) -> list[Problem]:
    """Problems across files; names in `unchecked` (files that failed earlier) are not
    reported missing again."""
    return _Checker(project, source, unchecked).run()


def handler_problem(project: Project, source: ProjectSource, function: Function,
                    handler: str) -> str | None:
    """What is wrong with calling `handler` of `function`, as `validate` says it, or None."""
    return _Checker(project, source, frozenset()).handler_problem(function, handler)


def ignored_params(project: Project, source: ProjectSource, target: str, handler: str | None,
                   names: Iterable[str]) -> list[str]:
    """What to say of each param in `names`, given for a run of `target` (a job or a
    function), that neither its handler takes as an argument nor the project or job sets:
    a typo, most likely, which the run would pass over (it has the param only through
    context.get_param)."""
    job = project.jobs.get(target)
    names = [name for name in names if name not in project.params
             and (job is None or name not in job.params)]
    if not names:
        return []  # the usual case: no code is read
    function = project.functions.get(job.run.function or "" if job else target)
    chosen = handler or (job.run.handler if job else None) or (function and function.handler)
    if function is None or not chosen:
        return []  # a pipeline job: each step takes what it takes
    takes = _Checker(project, source, frozenset()).handler_arguments(function, chosen)
    if takes is None:
        return []
    named = ", ".join(sorted(takes - {"context"})) or "no params"
    return [f"param {name!r}: handler {chosen!r} takes no argument of that name (it takes: "
            f"{named}); the run has it only through "
            f"context.get_param({name!r})" for name in names if name not in takes]


def input_problem(project: Project, source: ProjectSource, uri: str) -> str | None:
    """What is wrong with `uri` as a job's input, as `validate` says it, or None."""
    if is_repo_path(uri):
        return _Checker(project, source, frozenset()).repo_path_problem(uri)
    if step_ref(uri) is not None:
        return "step:// inputs are only for pipeline steps"
    return refs.input_uri_problem(uri)


def repo_path_problem(path: str) -> str | None:
    """Why `path` is not a path of the project as written in its files, or None.

    Paths are relative, inside the project and in normal form (no `.` or `..`
    parts, no `//`, no `/` at the end): the plan compares them with git's paths as
    text, and the working tree and a revision must read them alike.
    """
    if any(ord(char) < 0x20 or char == "\x7f" for char in path):
        return f"{path!r} holds a line break or a control character"
    if path.startswith("/"):
        return f"{path!r} is an absolute path; use a path relative to the project"
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        return f"{path!r} leaves the project folder"
    if normal == ".":
        return f"{path!r} is the project folder itself; name a file or a folder in it"
    if normal != path:
        return f"{path!r} is not in normal form (no '.', '..' or '//' parts, no '/' at the end): " \
               f"write {normal!r}"
    return None


_NO_NOTEBOOK_HANDLER = ("a notebook runs top to bottom and has no handler: remove `handler` "
                        "(params are set in a cell after the one tagged `parameters`)")


class _Checker:
    def __init__(self, project: Project, source: ProjectSource, unchecked: frozenset[str]) -> None:
        self.project = project
        self.source = source
        self.unchecked = unchecked
        self.problems: list[Problem] = []
        self.modules: dict[str, set[str] | None] = {}
        self.texts: dict[str, str | None] = {}

    def run(self) -> list[Problem]:
        self.settings()
        for function in self.project.functions.values():
            self.function(function)
        for pipeline in self.project.pipelines.values():
            self.pipeline(pipeline)
        for job in self.project.jobs.values():
            self.job(job)
        return self.problems

    def add(self, doc: Document | None, path: Path, message: str) -> None:
        assert doc is not None
        self.problems.append(doc.problem(path, message))

    # project.yaml

    def settings(self) -> None:
        project, doc = self.project, self.project.doc
        self.rule(doc, ("results", "branch"), refs.branch_problem(project.results_branch))
        for index, branch in enumerate(project.branches):
            self.rule(doc, ("branches", index), refs.branch_problem(branch))
        self.rule(doc, ("defaults", "base_image"), refs.image_problem(project.base_image))

    # functions

    def function(self, function: Function) -> None:
        doc = function.doc
        if function.command is not None and function.handler is not None:
            self.add(doc, ("handler",), "give either `command` or `handler`, not both")
        if function.command is None and function.code is None and not _lost(doc, ()):
            self.add(doc, (), "a function needs `code` (Python) or `command`")
        code_ok = function.code is not None and self.repo_path(doc, ("code",), function.code, "code",
                                                                folder_ok=True)
        self.environment(function)
        if function.is_notebook and code_ok:
            if function.handler is not None:
                self.add(doc, ("handler",), _NO_NOTEBOOK_HANDLER)
            assert function.code is not None
            if self.source.is_file(function.code):
                self.notebook(function.code)
        elif function.handler is not None and function.command is None and code_ok:
            self.handler(function, function.handler, doc, ("handler",))
        self.secrets(function)

    def secrets(self, function: Function) -> None:
        project = self.project
        if project.doc is None or _lost(project.doc, ()):
            return  # its list of secrets may be what it lost
        for index, secret in enumerate(function.secrets):
            if secret not in project.secrets:
                known = ", ".join(project.secrets) or "none"
                self.add(function.doc, ("secrets", index),
                         f"{secret!r} is not one of the project's secrets (project.yaml `secrets:`: {known})")

    def environment(self, function: Function) -> None:
        doc, env = function.doc, function.environment
        at: Path = ("environment", "requirements_file")
        if env.requirements_file is not None and self.repo_path(doc, at, env.requirements_file,
                                                                "requirements file"):
            self.requirements_file(doc, at, env.requirements_file)
        for index, requirement in enumerate(env.requirements):
            self.rule(doc, ("environment", "requirements", index), refs.requirement_problem(requirement))
        if env.base_image:
            self.rule(doc, ("environment", "base_image"), refs.image_problem(env.base_image))

    def rule(self, doc: Document | None, path: Path, problem: str | None) -> None:
        if problem is not None:
            self.add(doc, path, problem)

    def requirements_file(self, doc: Document | None, at: Path, file: str) -> None:
        """Each line of a requirements file must be a requirement; reported once per file."""
        if file in self.texts:
            return
        text = self.text(file)
        for number, requirement in refs.requirement_lines(text or ""):
            problem = refs.requirement_problem(requirement)
            if problem is not None:
                self.problems.append(Problem(file, number, 1, problem))

    def text(self, file: str) -> str | None:
        """A file of the project as UTF-8 text, read once; None, with a problem, if it is not."""
        if file not in self.texts:
            self.texts[file] = self.read_text(file)
        return self.texts[file]

    def read_text(self, file: str) -> str | None:
        try:
            raw = self.source.read(file)
            return raw.decode("utf-8-sig")
        except SourceError as error:
            self.problems.append(Problem(file, 1, 1, error.reason))
        except UnicodeDecodeError as error:
            line = raw.count(b"\n", 0, error.start) + 1
            col = error.start - raw.rfind(b"\n", 0, error.start)
            self.problems.append(Problem(file, line, col, "file is not valid UTF-8"))
        return None

    def repo_path(self, doc: Document | None, path: Path, value: str, what: str,
                  folder_ok: bool = False) -> bool:
        """Whether `value` is a file (or, if `folder_ok`, a folder) of the project; a problem
        at `path` if not."""
        why = self.repo_path_problem(value, folder_ok)
        if why is not None:
            self.add(doc, path, f"{what} {why}")
        return why is None

    def repo_path_problem(self, value: str, folder_ok: bool = False) -> str | None:
        why = repo_path_problem(value) or self.unreachable(value)
        if why is None and not folder_ok and self.source.is_dir(value):
            why = f"{value!r} is a folder, not a file"
        return why

    def unreachable(self, value: str) -> str | None:
        """Why the file or folder `value` cannot be read, or None."""
        try:
            real = self.source.resolve(value)
        except SourceError as error:
            return f"{value!r}: {error.reason}"
        if self.source.is_file(real) or self.source.is_dir(real):
            return None
        if real != value:
            return f"{value!r} is a symbolic link to {real!r}, which does not exist"
        if self.source.lexists(value):
            return f"{value!r} is neither a regular file nor a folder"
        return f"{value!r} does not exist in the project"

    def notebook(self, file: str) -> None:
        """The notebook parses as a version 4 notebook with a Python kernel, and at most
        one cell is tagged `parameters`; problems at the line of the file where they are."""
        text = self.text(file)
        if text is not None:
            self.problems.extend(notebooks.problems(file, text))

    def handler(self, function: Function, handler: str, doc: Document | None, path: Path) -> None:
        why = self.handler_problem(function, handler)
        if why is not None:
            self.add(doc, path, why)

    def handler_problem(self, function: Function, handler: str) -> str | None:
        """What is wrong with calling `handler` of `function`, or None."""
        if function.command is not None:
            return f"function {function.name!r} runs a `command`; it has no handlers"
        if function.is_notebook:
            return f"function {function.name!r} runs a notebook; {_NO_NOTEBOOK_HANDLER}"
        code = function.code
        if code is None or repo_path_problem(code) or self.unreachable(code):
            return None  # the function's own check says what is wrong with its code
        if not self.is_python(code):
            return (f"handler {handler!r}: {code!r} is not Python code (a .py file or a "
                    "package folder); run code in other languages with `command`")
        module, _, name = handler.rpartition(".")
        candidates = _module_files(code, module, self.source.is_dir(code))
        if not candidates:
            return f"handler {handler!r}: {code} is a file, so name a function in it"
        for candidate in candidates:
            if not self.source.lexists(candidate):
                continue
            names = self.top_level_names(candidate)
            if names is not None and name not in names:
                return f"handler {name!r} is not defined in {candidate}"
            return None  # names is None: the module's own problem is reported
        return f"handler {handler!r}: no module {' or '.join(candidates)}"

    def handler_arguments(self, function: Function, handler: str) -> frozenset[str] | None:
        """The names a Python handler takes, read from its `def`; None where that does not
        tell (not Python, no such plain `def`, a decorator, `**kwargs`)."""
        code = function.code
        if function.command is not None or function.is_notebook or code is None \
                or repo_path_problem(code) or self.unreachable(code) or not self.is_python(code):
            return None
        module, _, name = handler.rpartition(".")
        existing = [path for path in _module_files(code, module, self.source.is_dir(code))
                    if self.source.lexists(path)]
        text = self.text(existing[0]) if existing else None
        try:
            tree = ast.parse(text) if text is not None else None
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            tree = None
        found = [node for node in (tree.body if tree else [])
                 if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name]
        if len(found) != 1 or found[0].decorator_list or found[0].args.kwarg:
            return None
        args = found[0].args
        return frozenset(arg.arg for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs])

    def is_python(self, code: str) -> bool:
        return code.endswith(".py") or self.source.is_dir(code)

    def top_level_names(self, path: str) -> set[str] | None:
        if path not in self.modules:
            self.modules[path] = self.parse_module(path)
        return self.modules[path]

    def parse_module(self, path: str) -> set[str] | None:
        """The names a module defines; None, with a problem, when it cannot be parsed."""
        text = self.text(path)
        if text is None:
            return None
        try:
            tree = ast.parse(text, filename=path)
        except (SyntaxError, ValueError) as error:
            line = getattr(error, "lineno", None) or 1
            col = getattr(error, "offset", None) or 1
            message = getattr(error, "msg", str(error))
            self.problems.append(Problem(path, line, col, f"Python syntax error: {message}"))
            return None
        except (RecursionError, MemoryError):  # what ast.parse raises for code nested too deep
            self.problems.append(Problem(path, 1, 1, "Python code nested too deeply for Python's parser"))
            return None
        return set(_bound_names(tree.body))

    # pipelines

    def pipeline(self, pipeline: Pipeline) -> None:
        doc = pipeline.doc
        seen: dict[str, int] = {}
        for step in pipeline.steps:
            path: Path = ("steps", step.index)
            if step.name in seen:
                self.add(doc, (*path, "name"), f"step name {step.name!r} is used twice")
            seen.setdefault(step.name, step.index)
            function = self.project.functions.get(step.function)
            if function is None and step.function in self.unchecked:
                pass
            elif function is None:
                self.add(doc, (*path, "function"), self.unknown("function", step.function))
            elif step.handler is not None:
                self.handler(function, step.handler, doc, (*path, "handler"))
            elif _lacks_handler(function) and not _lost(doc, path):
                self.add(doc, (*path, "function"), f"function {function.name!r} has no handler: "
                         "name one in the step (`handler:`) or the function")
            for name in step.after:
                if pipeline.step(name) is None and _all_steps(pipeline):
                    near = did_you_mean(name, [other.name for other in pipeline.steps])
                    self.add(doc, (*path, "after"),
                             f"`after` names no step {name!r} of this pipeline{near}")
            self.inputs(doc, (*path, "inputs"), step.inputs, pipeline, seen, step.name)
        if len(seen) == len(pipeline.steps):  # with a name used twice, "cycles" mislead
            self.acyclic(pipeline)

    def inputs(self, doc: Document | None, path: Path, inputs: dict[str, str] | object,
               pipeline: Pipeline | None, earlier: dict[str, int], here: str) -> None:
        assert isinstance(inputs, dict)
        for key, uri in inputs.items():
            at = (*path, key)
            if is_repo_path(uri):
                self.repo_path(doc, at, uri, "input")
                continue
            problem = refs.input_uri_problem(uri)
            ref = step_ref(uri)
            if problem is not None:
                self.add(doc, at, problem)
            elif ref is not None:
                self.step_input(doc, at, ref, pipeline, earlier, here)

    def step_input(self, doc: Document | None, at: Path, ref: tuple[str, str | None],
                   pipeline: Pipeline | None, earlier: dict[str, int], here: str) -> None:
        name, output = ref
        if pipeline is None:
            self.add(doc, at, "step:// inputs are only for pipeline steps")
            return
        source = pipeline.step(name)
        if source is None and not _all_steps(pipeline):
            pass  # it may be a step lost to a schema error
        elif source is None:
            near = did_you_mean(name, [step.name for step in pipeline.steps])
            self.add(doc, at, f"step://{name}: the pipeline has no step {name!r}{near}")
        elif name == here or name not in earlier:
            self.add(doc, at, f"step://{name}: step {name!r} does not come before {here!r}")
        elif output is None:
            self.add(doc, at, f"step://{name}: name an output, as step://{name}/OUTPUT")
        elif source.outputs and output not in source.outputs:
            declared = ", ".join(source.outputs)
            self.add(doc, at, f"step {name!r} declares no output {output!r} (it has: {declared})")

    def acyclic(self, pipeline: Pipeline) -> None:
        waits = {s.name: [u for u in s.upstream() if pipeline.step(u)] for s in pipeline.steps}
        cycle = _find_cycle(waits)
        if cycle:
            step = pipeline.step(cycle[0])
            assert step is not None
            loop = " -> ".join([*cycle, cycle[0]])
            self.add(pipeline.doc, ("steps", step.index, "name"), f"the steps form a cycle: {loop}")

    # jobs

    def job(self, job: Job) -> None:
        doc, run = job.doc, job.run
        pipeline = None
        if run.pipeline is not None:
            pipeline = self.project.pipelines.get(run.pipeline)
            if pipeline is None and run.pipeline not in self.unchecked:
                self.add(doc, ("run", "pipeline"), self.unknown("pipeline", run.pipeline))
            if run.handler is not None:
                self.add(doc, ("run", "handler"), "a handler goes with `function`, not `pipeline`")
        if run.function is not None:
            function = self.project.functions.get(run.function)
            if function is None and run.function in self.unchecked:
                pass
            elif function is None:
                self.add(doc, ("run", "function"), self.unknown("function", run.function))
            elif run.handler is not None:
                self.handler(function, run.handler, doc, ("run", "handler"))
            elif _lacks_handler(function) and not _lost(doc, ("run",)):
                self.add(doc, ("run", "function"), f"function {function.name!r} has no handler: "
                         "name one here (`handler:`) or in the function")
        self.inputs(doc, ("inputs",), dict(job.inputs), None, {}, job.name)
        self.hyper(job)
        self.triggers(job)

    def hyper(self, job: Job) -> None:
        hyper = job.hyper
        if hyper is None:
            return
        complete = not (_lost(job.doc, ("hyper",)) or _lost(job.doc, ("hyper", "params")))
        messages = trials.check_hyper(hyper.strategy, hyper.params, hyper.exclude,
                                       hyper.max_trials) if complete else []
        for message in messages:
            entry = re.search(r"exclude entry (\d+)", message)
            at: Path = ("hyper", "params")
            if entry:
                at = ("hyper", "exclude", int(entry[1]) - 1)
            elif "exclude" in message:
                at = ("hyper", "exclude")
            self.add(job.doc, at, message)
        if hyper.stop_condition is not None:
            try:
                parse_condition(hyper.stop_condition)
            except ConditionError as error:
                self.add(job.doc, ("hyper", "stop_condition"),
                         f"stop_condition, column {error.column}: {error.message}")

    def triggers(self, job: Job) -> None:
        triggers = job.triggers
        if triggers is None or triggers.schedule is None:
            return
        schedule = triggers.schedule
        raw = job.doc.data["triggers"]["schedule"] if job.doc else None
        base: Path = ("triggers", "schedule")
        for value, parse, key in ((schedule.cron, when.parse_cron, "cron"),
                                  (schedule.at, when.parse_at, "at")):
            if value is None:
                continue
            try:
                parse(value)
            except ValueError as error:
                self.add(job.doc, (*base, key) if isinstance(raw, dict) else base, str(error))
        try:
            when.zone(schedule.timezone)
        except ValueError as error:
            self.add(job.doc, (*base, "timezone"), str(error))

    def unknown(self, kind: str, name: str) -> str:
        known = {"function": self.project.functions, "pipeline": self.project.pipelines}[kind]
        names = ", ".join(sorted(known)) or "none"
        return f"no {kind} named {name!r}{did_you_mean(name, known)} (known: {names})"


def _lost(doc: Document | None, path: Path) -> bool:
    """Whether the mapping at `path` lost keys to schema errors (see Document.lost)."""
    return doc is not None and path in doc.lost


def _lacks_handler(function: Function) -> bool:
    """A function with neither handler nor command nor a notebook, for sure (not lost to a
    schema error)."""
    return (function.handler is None and function.command is None and not function.is_notebook
            and not _lost(function.doc, ()))


def _all_steps(pipeline: Pipeline) -> bool:
    """Whether every step of the file made it into the pipeline (none lost its name or function)."""
    steps = pipeline.doc.data.get("steps", ()) if pipeline.doc is not None else ()
    return len(pipeline.steps) == len(steps)


def _module_files(code: str, module: str, is_package: bool) -> list[str]:
    if not is_package:
        return [] if module else [code]
    base = posixpath.join(code, *module.split(".")) if module else code
    if not module:
        return [posixpath.join(code, "__init__.py")]
    return [f"{base}.py", posixpath.join(base, "__init__.py")]


def _bound_names(body: Iterable[ast.stmt]) -> Iterable[str]:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.Import | ast.ImportFrom):
            yield from ((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign):
            yield from (t.id for t in node.targets if isinstance(t, ast.Name))


def _find_cycle(waits: dict[str, list[str]]) -> list[str]:
    """One cycle in the graph `step -> steps it waits for`, in order, or []."""
    state: dict[str, int] = {}
    trail: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        trail.append(node)
        for upstream in waits.get(node, []):
            if state.get(upstream) == 1:
                return list(reversed(trail[trail.index(upstream):]))
            if upstream not in state and (found := visit(upstream)):
                return found
        trail.pop()
        state[node] = 2
        return []

    for node in waits:
        if node not in state and (found := visit(node)):
            return found
    return []
