"""Deciding which code is "the application's" (SPEC: in scope) and caching facts per code object.

The sampler asks the same questions about the same few thousand code objects millions of
times, so every fact it needs about a function (its site name, whether it is in scope,
whether it counts as an operation, whether it is an idle wait) is computed once and kept
in a :class:`CodeInfo`.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import site as site_module
import sys
import sysconfig
from collections.abc import Mapping
from fnmatch import fnmatchcase
from types import CodeType, FrameType

from . import limits
from .idle import IdleRules

#: Packages that *run* an application rather than being it (SPEC: "A tool that runs the
#: application is not the application"). Their entry point never puts them in scope.
TOOL_PACKAGES = frozenset(
    {
        "pytest",
        "_pytest",
        "pluggy",
        "unittest",
        "nose2",
        "coverage",
        "uvicorn",
        "gunicorn",
        "hypercorn",
        "daphne",
        "granian",
        "waitress",
        "celery",
        "flask",
        "django",
        "IPython",
        "ipykernel",
        "runpy",
        "cProfile",
        "profile",
        "pdb",
        "trace",
        "timeit",
        "nox",
        "tox",
        "pip",
        "spangap",
    }
)

#: Code objects that are not calls a person can wrap in a span: module bodies, class
#: bodies run once at import, and comprehensions (separate frames on 3.11 only).
_NOT_OPERATIONS = frozenset({"<module>", "<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})

#: Code whose frame survives a suspension (generators, coroutines): its frame object stays
#: "running" while suspended, so the liveness watcher cannot follow it.
_RESUMABLE = (
    inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ITERABLE_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
)

_OWN_DIR = os.path.dirname(os.path.abspath(__file__))


class CodeInfo:
    """What the sampler needs to know about one code object."""

    __slots__ = (
        "countable",
        "display",
        "file",
        "idle",
        "in_scope",
        "line",
        "module",
        "qualname",
        "resumable",
        "site",
    )

    def __init__(
        self,
        module: str,
        qualname: str,
        file: str,
        line: int,
        in_scope: bool,
        countable: bool,
        idle: int,
    ) -> None:
        self.module = module
        self.qualname = qualname
        self.site = f"{module}:{qualname}"
        self.display = f"{module}.{qualname}"
        self.file = file
        self.line = line
        self.in_scope = in_scope
        self.countable = countable
        self.idle = idle
        self.resumable = False


def _third_party_dirs() -> tuple[str, ...]:
    dirs: set[str] = set()
    with contextlib.suppress(AttributeError):  # some embedded interpreters lack these
        dirs.update(site_module.getsitepackages())
    with contextlib.suppress(AttributeError):
        dirs.add(site_module.getusersitepackages())
    paths = sysconfig.get_paths()
    dirs.update({paths["purelib"], paths["platlib"]})
    dirs.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    return tuple(sorted({os.path.normcase(os.path.abspath(d)) + os.sep for d in dirs if d}))


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths["stdlib"], paths["platstdlib"]}
    for prefix in {sys.base_prefix, sys.base_exec_prefix}:
        dirs.add(os.path.join(prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}"))
    return tuple(sorted({os.path.normcase(os.path.abspath(d)) + os.sep for d in dirs if d}))


def _matches(module: str, patterns: tuple[str, ...]) -> bool:
    """A pattern matches the module itself and, for a package, everything below it."""
    return any(fnmatchcase(module, p) or fnmatchcase(module, p + ".*") for p in patterns)


def module_name(f_globals: dict[str, object]) -> str:
    """The module's name, and for the program's main module the name it has when
    imported: ``python -m shop.app`` gives ``shop.app``, ``python app.py`` gives ``app``
    (a site named ``__main__:handler`` would say nothing in a fleet's dashboard). Code
    run from ``-c`` or stdin stays ``__main__``."""
    name = f_globals.get("__name__")
    if not isinstance(name, str):
        return "?"
    if name != "__main__":
        return name
    try:
        spec_name = getattr(f_globals.get("__spec__"), "name", None)
    except Exception:
        spec_name = None
    if isinstance(spec_name, str) and spec_name:
        return spec_name
    file = f_globals.get("__file__")
    if isinstance(file, str) and file.endswith(".py"):
        stem = os.path.splitext(os.path.basename(file))[0]
        if stem.isidentifier():
            return stem
    return name


def detect_entry_package() -> str | None:
    """The top-level package that provides the program's entry point, if any.

    ``python -m shop.api`` gives ``shop``; a console script ``shop-serve`` whose entry
    point is ``shop.cli:main`` gives ``shop``. Tools that run other code (pytest,
    uvicorn, ...) are not the application and give ``None``.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name: str | None = getattr(spec, "name", None)
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    if not name and script and not script.endswith(".py"):
        # A console script: its entry point names the module. A .py file is not one,
        # and reading every installed distribution's entry points costs 10 ms or more
        # (minutes behind hundreds of CPU-bound threads, each read waiting for the GIL).
        name = _console_script_module(script)
    if not name:
        return None
    top = name.split(".")[0]
    return None if top in TOOL_PACKAGES else top


def _console_script_module(script: str) -> str | None:
    try:
        from importlib.metadata import entry_points

        for ep in entry_points(group="console_scripts"):
            if ep.name == script:
                return ep.value.split(":")[0].strip()
    except Exception:
        return None
    return None


class Scope:
    """Classifies code objects as in or out of scope and caches a :class:`CodeInfo` each."""

    def __init__(
        self,
        include: tuple[str, ...] = (),
        exclude: tuple[str, ...] = (),
        idle_functions: tuple[str, ...] = (),
        entry_package: str | None = None,
    ) -> None:
        self.include = include
        self.exclude = exclude
        self.entry_package = entry_package if entry_package not in TOOL_PACKAGES else None
        self._rules = IdleRules(idle_functions)
        self._third_party = _third_party_dirs()
        self._stdlib = _stdlib_dirs()
        self._stdlib_names = frozenset(sys.stdlib_module_names)
        self._cache: dict[CodeType, CodeInfo] = {}
        self._cache_limit = limits.LIMITS.code_cache  # about 10 MB when full

    def info(self, code: CodeType, module: str, main: bool = False) -> CodeInfo:
        """The cached facts about ``code``; ``module`` is its module's name, ``main``
        whether that module is the program's ``__main__`` (see :func:`module_name`)."""
        found = self._cache.get(code)
        if found is None:
            if len(self._cache) >= self._cache_limit:
                self._cache.clear()  # dynamically generated code; start over rather than grow
            found = self._cache[code] = self._classify(code, module, main)
        return found

    @property
    def cached(self) -> Mapping[CodeType, CodeInfo]:
        """Every code object classified so far (held: its address is not reused while
        it is here), with its facts."""
        return self._cache

    def info_of(self, frame: FrameType) -> CodeInfo:
        """:meth:`info` for a frame; its module name is read only on a cache miss."""
        found = self._cache.get(frame.f_code)
        if found is not None:
            return found
        f_globals = frame.f_globals
        raw = f_globals.get("__name__") or "?"
        return self.info(frame.f_code, module_name(f_globals), main=raw == "__main__")

    def in_scope(self, module: str, filename: str, main: bool = False) -> bool:
        """SPEC "in scope": the application's code, not the stdlib's, ours, or a dependency's.
        The program's main module matches ``__main__`` in include and exclude too."""
        if module == "spangap" or module.startswith("spangap."):
            return False
        if self.exclude and (
            _matches(module, self.exclude) or (main and _matches("__main__", self.exclude))
        ):
            return False
        if self.include and (
            _matches(module, self.include) or (main and _matches("__main__", self.include))
        ):
            return True
        top = module.split(".")[0]
        if self.entry_package is not None and top == self.entry_package:
            return True
        path = os.path.normcase(os.path.abspath(filename)) if not filename.startswith("<") else ""
        if path.startswith(_OWN_DIR + os.sep):
            return False
        if path and path.startswith(self._third_party):
            return False
        if filename.startswith("<frozen") or (path and path.startswith(self._stdlib)):
            return False
        if not path:  # "<string>", "<stdin>": judge by module name alone; code that the
            # stdlib makes from strings names modules that do not exist (namedtuple_Point)
            if main or module == "__main__":
                return True
            return top not in self._stdlib_names and module in sys.modules
        return True

    def _classify(self, code: CodeType, module: str, main: bool) -> CodeInfo:
        qualname = getattr(code, "co_qualname", code.co_name)
        in_scope = self.in_scope(module, code.co_filename, main)
        countable = in_scope and code.co_name not in _NOT_OPERATIONS
        info = CodeInfo(
            module, qualname, code.co_filename, code.co_firstlineno, in_scope, countable, 0
        )
        info.idle = self._rules.classify(info.site)
        info.resumable = bool(code.co_flags & _RESUMABLE)
        return info
