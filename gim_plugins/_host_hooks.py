"""The host hooks behind :mod:`gim_plugins._bootstrap`: entry-point scan, conf merge, model shims, attribute hook.

Imported only when the bootstrap's finder sees a hooked host module being imported (so interpreter start-up never
compiles or runs this file). Entry points are read then, once per process, and each group is selected from them on
first need (``importlib.invalidate_caches()`` forgets them). Standard library only; it never imports a host, torch,
or another part of ``gim_plugins``.

Entry-point groups (any distribution may declare them; the entry-point name is the key):

``hloc.matchers``, ``hloc.extractors``
    name = the model name hloc looks up (``conf["model"]["name"]``); value = a subclass of hloc's ``BaseModel``.
    When hloc has no module ``hloc.matchers.<name>``, the finder serves one holding a subclass of the registered
    class re-homed into that module, so ``hloc.utils.base_model.dynamic_load`` finds exactly one model in it.
``hloc.match_dense.confs``, ``hloc.match_features.confs``, ``hloc.extract_features.confs``
    name = conf name; value = a dict, or a callable returning a dict (or ``None`` for "not available here").
    Merged into the module's top-level ``confs`` dict right after hloc assigns it, for ``import`` and ``python -m``.
``kornia.feature``
    name = attribute; value = any object, served by a PEP 562 ``__getattr__``/``__dir__`` of ``kornia.feature``.
``hloc.match_dense.import_fallbacks`` (and the same for ``match_features``, ``extract_features``)
    name = a module the host module imports as ``import <name> as <alias>``; value = a stand-in module. Only when
    importing ``<name>`` fails is the host module compiled with ``try: import <name> as <alias>`` / ``except
    Exception: import <value> as <alias>``. The adapter that provides a stand-in declares it, so this module names no
    adapter: gim-plugins' hloc adapter declares a torch-only stand-in for the one torchvision call of
    ``hloc.match_dense`` (``F.resize`` on a tensor). Read only for the hloc step modules, whose import reads the
    environment's entry points for their confs anyway; interpreter start-up and ``kornia.feature`` never read them.
``hloc.match_dense.wrappers`` (and the same for ``match_features``, ``extract_features``)
    name = a top-level function of the host module; value = a factory ``wrap(original) -> replacement``. The module's
    global is replaced right after its ``def`` (``python -m``) or right after the module ran (``import``), so the
    host's own calls of that name go through the replacement. A replacement must keep the original's signature and
    fall back to calling ``original`` for everything it does not handle itself: gim-plugins' hloc adapter wraps
    ``match_dense`` to run batches of pairs through one forward pass, and leaves every other model to hloc.

Rules: the host's own names always win (an hloc conf or model module, a ``kornia.feature`` attribute or submodule of
the same name is used unchanged); of two plugins registering one name, the distribution found first on ``sys.path``
wins. A plugin that fails to load issues a ``RuntimeWarning`` and never breaks the host; only a request for that very
model or attribute fails, naming the plugin. ``GIM_PLUGINS_NO_HOOKS=1`` turns everything off. If hloc's code no longer
has a top-level ``confs = ...`` assignment, a warning says so once instead of failing silently.
"""

from __future__ import annotations

import sys

__all__ = ["FALLBACK_GROUPS", "GROUPS", "HOOKED", "WRAPPER_GROUPS", "entry_points", "find_spec", "import_error",
           "import_fallbacks", "invalidate_caches", "merge_confs", "transform_source", "wrapped"]

MODEL_PACKAGES = {"hloc.matchers": "hloc.matchers", "hloc.extractors": "hloc.extractors"}
"""Host package → entry-point group of the model modules served inside it."""

CONF_MODULES = {
    "hloc.match_dense": "hloc.match_dense.confs",
    "hloc.match_features": "hloc.match_features.confs",
    "hloc.extract_features": "hloc.extract_features.confs",
}
"""Host module → entry-point group merged into its top-level ``confs`` dict."""

CONF_VARIABLE = "confs"

ATTRIBUTE_MODULES = {"kornia.feature": "kornia.feature"}
"""Host module → entry-point group served as extra module attributes."""

FALLBACK_GROUPS = {module: f"{module}.import_fallbacks" for module in CONF_MODULES}
"""Host module → entry-point group of its import fallbacks ({module it imports: stand-in used only when that import
fails}); see :func:`import_fallbacks`."""

WRAPPER_GROUPS = {module: f"{module}.wrappers" for module in CONF_MODULES}
"""Host module → entry-point group of wrappers of its top-level functions ({function name: factory}); see
:func:`wrapped`."""

GROUPS = (*MODEL_PACKAGES.values(), *CONF_MODULES.values(), *ATTRIBUTE_MODULES.values(), *FALLBACK_GROUPS.values(),
          *WRAPPER_GROUPS.values())

HOOKED = frozenset(CONF_MODULES) | frozenset(ATTRIBUTE_MODULES)
_installed: object = None
"""``importlib.metadata.entry_points()`` of the environment, read on first need (``()`` when reading failed)."""
_groups: dict[str, dict[str, object]] = {}
_warned: set[str] = set()


def _warn(message: str, key: str | None = None) -> None:
    """A ``RuntimeWarning`` (once per ``key`` and process when a key is given)."""
    if key is not None:
        if key in _warned:
            return
        _warned.add(key)
    import warnings

    warnings.warn(f"gim_plugins: {message}", RuntimeWarning, stacklevel=3)


def _describe(entry_point: object) -> str:
    dist = getattr(entry_point, "dist", None)
    origin = f" from {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point {entry_point.name} = {entry_point.value}{origin}"  # type: ignore[attr-defined]


def entry_points(group: str) -> dict[str, object]:
    """``{name: EntryPoint}`` of one host group; the first distribution on ``sys.path`` wins a duplicate name.

    The environment's entry points are read once per process; each group is selected from them the first time it is
    asked for, so a process pays only for the groups its imports need (``import kornia.feature`` one, ``import
    hloc.match_dense`` the confs and fallbacks of the three hloc steps).
    """
    found = _groups.get(group)
    if found is None:
        found = _groups[group] = _select(group) if group in GROUPS else {}
    return found


def _select(group: str) -> dict[str, object]:
    global _installed
    found: dict[str, object] = {}
    try:
        if _installed is None:
            _installed = ()  # a failing scan is not retried for every group
            from importlib.metadata import entry_points as scan

            _installed = scan()
        for ep in _installed.select(group=group) if _installed else ():  # type: ignore[attr-defined]
            first = found.setdefault(ep.name, ep)
            if first is not ep and first.value != ep.value:  # type: ignore[attr-defined]
                _warn(f"{group!r} has {ep.name!r} twice; using {_describe(first)}, ignoring {_describe(ep)}",
                      key=f"duplicate:{group}:{ep.name}")
    except Exception as exc:  # broken metadata of some distribution must not break the host
        _warn(f"cannot read entry points ({type(exc).__name__}: {exc}); host plugins are unavailable", key="scan")
    return found


def merge_confs(confs: object, module_name: str) -> None:
    """Add the confs of entry-point group ``<module_name>.confs`` to a host's ``confs`` dict (host names win)."""
    group = CONF_MODULES.get(module_name, f"{module_name}.{CONF_VARIABLE}")
    if not isinstance(confs, dict):
        _warn(f"{module_name}.{CONF_VARIABLE} is {type(confs).__name__}, not a dict; plugin confs of {group!r} "
              "were not added", key=f"notdict:{module_name}")
        return
    for name, ep in entry_points(group).items():
        if name in confs:
            continue
        try:
            value = ep.load()  # type: ignore[attr-defined]
            if callable(value):
                value = value()
            if value is None:  # the plugin says: not available in this environment
                continue
            if not isinstance(value, dict):
                raise TypeError(f"expected a dict, got {type(value).__name__}")
            import copy

            confs[name] = copy.deepcopy(value)
        except Exception as exc:
            _warn(f"{group!r} conf {name!r} is broken and was skipped ({_describe(ep)}): {type(exc).__name__}: {exc}",
                  key=f"conf:{group}:{name}")


def _install_attribute_hook(module: object, group: str) -> None:
    """PEP 562 ``__getattr__``/``__dir__`` on ``module`` that resolve missing names from entry-point ``group``."""
    namespace = module.__dict__
    if namespace.get("__gim_plugins_group__") == group:
        return
    previous_getattr = namespace.get("__getattr__")
    previous_dir = namespace.get("__dir__")
    module_name = namespace.get("__name__", "?")

    def __getattr__(name: str) -> object:
        ep = None if name.startswith("__") else entry_points(group).get(name)
        if ep is not None and not _host_has_submodule(namespace, name):
            try:
                value = ep.load()  # type: ignore[attr-defined]
            except Exception as exc:
                _warn(f"{module_name}.{name} ({_describe(ep)}) failed to load: {type(exc).__name__}: {exc}",
                      key=f"attr:{group}:{name}")
                raise AttributeError(f"module {module_name!r} attribute {name!r} comes from {_describe(ep)}, which "
                                     f"failed to load: {exc}", name=name, obj=module) from exc
            setattr(module, name, value)
            return value
        if previous_getattr is not None:
            return previous_getattr(name)
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}", name=name, obj=module)

    def __dir__() -> list[str]:
        names = previous_dir() if previous_dir is not None else list(namespace)
        return sorted(set(names) | set(entry_points(group)))

    namespace["__getattr__"] = __getattr__
    namespace["__dir__"] = __dir__
    namespace["__gim_plugins_group__"] = group


def _host_has_submodule(namespace: dict, name: str) -> bool:
    """Whether a package has a submodule ``name`` (a host submodule wins over a plugin attribute)."""
    path = namespace.get("__path__")
    if not path:
        return False
    from importlib.machinery import PathFinder

    return PathFinder.find_spec(f"{namespace['__name__']}.{name}", path) is not None


WRAPPED_MARK = "__gim_plugins_wrapped__"
"""Attribute set on a replacement made by :func:`wrapped` (it holds the entry point's description)."""


def wrapped(function: object, module_name: str, name: str) -> object:
    """``function`` as the wrapper declared for ``<module_name>.<name>`` makes it, or unchanged when none is declared.

    A wrapper that fails to load, raises, or returns something not callable issues a ``RuntimeWarning`` (once) and
    the host's own function stays in place; a function already wrapped is returned as it is.
    """
    group = WRAPPER_GROUPS.get(module_name)
    ep = entry_points(group).get(name) if group is not None else None
    if ep is None or not callable(function) or getattr(function, WRAPPED_MARK, None):
        return function
    try:
        replacement = ep.load()(function)  # type: ignore[attr-defined]
        if not callable(replacement):
            raise TypeError(f"the factory returned {type(replacement).__name__}, not a function")
        setattr(replacement, WRAPPED_MARK, _describe(ep))
    except Exception as exc:
        _warn(f"{module_name}.{name} is left as it is: the wrapper {_describe(ep)} failed: {type(exc).__name__}: "
              f"{exc}", key=f"wrap:{group}:{name}")
        return function
    return replacement


def _wrap_functions(fullname: str, namespace: dict) -> None:
    group = WRAPPER_GROUPS.get(fullname)
    for name in entry_points(group) if group is not None else ():
        if name in namespace:
            namespace[name] = wrapped(namespace[name], fullname, name)


def _after_exec(fullname: str, module: object) -> None:
    _wrap_functions(fullname, module.__dict__)
    if fullname in CONF_MODULES:
        confs = module.__dict__.get(CONF_VARIABLE)
        if confs is None:
            _warn_no_confs(fullname)
        else:
            merge_confs(confs, fullname)
    if fullname in ATTRIBUTE_MODULES:
        _install_attribute_hook(module, ATTRIBUTE_MODULES[fullname])


def _warn_no_confs(fullname: str) -> None:
    _warn(f"{fullname} has no top-level `{CONF_VARIABLE} = ...` assignment any more (the host's code changed); confs "
          f"of entry-point group {CONF_MODULES[fullname]!r} are not available. Please report this to gim-plugins.",
          key=f"noconfs:{fullname}")


def import_fallbacks(fullname: str) -> dict[str, str]:
    """``{module the host imports: stand-in module}`` declared for host module ``fullname`` (empty if none)."""
    group = FALLBACK_GROUPS.get(fullname)
    if group is None:
        return {}
    table = {}
    for required, ep in entry_points(group).items():
        stand_in = ep.value  # type: ignore[attr-defined]
        if not (_is_module_name(required) and _is_module_name(stand_in)):
            _warn(f"{group!r} entry {_describe(ep)} is not `module = stand-in module` and was ignored",
                  key=f"fallback:{group}:{required}")
            continue
        table[required] = stand_in
    return table


def _is_module_name(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def import_error(module: str) -> Exception | None:
    """What importing ``module`` raises (any exception: a broken build may raise ``RuntimeError``), or ``None``."""
    try:
        __import__(module)
    except Exception as exc:
        return exc
    return None


def _fallback_needed(fullname: str) -> bool:
    return any(import_error(required) is not None for required in import_fallbacks(fullname))


def transform_source(source: str | bytes, filename: str, fullname: str, *, fallbacks: bool = True) -> object:
    """Compile a host module with the conf merge (and, if asked, the import fallbacks) built in.

    The merge call is inserted right after the last top-level ``confs = ...`` assignment and carries that
    assignment's end line, so tracebacks keep hloc's line numbers.
    """
    import ast

    tree = ast.parse(source, filename)
    if fullname in CONF_MODULES:
        last = None
        for index, node in enumerate(tree.body):
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else [])
            if any(isinstance(t, ast.Name) and t.id == CONF_VARIABLE for t in targets):
                last = index
        if last is None:
            _warn_no_confs(fullname)
        else:
            call = ast.parse(f"__import__({__name__!r}, fromlist=['merge_confs']).merge_confs({CONF_VARIABLE}, "
                             f"{fullname!r})").body[0]
            ast.increment_lineno(call, tree.body[last].end_lineno - 1)
            tree.body.insert(last + 1, call)
    if fallbacks:
        for required, stand_in in import_fallbacks(fullname).items():
            _wrap_import(tree, required, stand_in)
    _insert_wrappers(tree, fullname)
    return compile(tree, filename, "exec", dont_inherit=True)


def _insert_wrappers(tree: object, fullname: str) -> None:
    """After each top-level ``def name`` that has a declared wrapper: ``name = wrapped(name, module, "name")``.

    Needed for ``python -m``, where the module's ``__main__`` block runs inside the module's own code, before any
    hook could replace the global afterwards.
    """
    import ast

    group = WRAPPER_GROUPS.get(fullname)
    names = set(entry_points(group)) if group is not None else set()
    if not names:
        return
    body = tree.body  # type: ignore[attr-defined]
    for index in reversed(range(len(body))):
        node = body[index]
        if isinstance(node, ast.FunctionDef) and node.name in names:
            call = ast.parse(f"{node.name} = __import__({__name__!r}, fromlist=['wrapped']).wrapped({node.name}, "
                             f"{fullname!r}, {node.name!r})").body[0]
            ast.increment_lineno(call, node.end_lineno - 1)
            body.insert(index + 1, call)


def _wrap_import(tree: object, required: str, stand_in: str) -> None:
    """``import required as X`` → ``try: import required as X`` / ``except Exception: import stand_in as X``."""
    import ast

    for index, node in enumerate(tree.body):  # type: ignore[attr-defined]
        if not (isinstance(node, ast.Import) and len(node.names) == 1 and node.names[0].name == required
                and node.names[0].asname):
            continue
        alias = node.names[0].asname
        replacement = ast.parse(f"try:\n    import {required} as {alias}\nexcept Exception:\n"
                                f"    import {stand_in} as {alias}\n").body[0]
        ast.increment_lineno(replacement, node.lineno - 1)
        tree.body[index] = replacement  # type: ignore[attr-defined]


class HookedLoader:
    """Wraps a host module's own loader: runs its code, then applies the hook; other methods are the inner loader's.

    ``exec_module`` (``import``) runs the inner loader's cached bytecode and merges afterwards, which costs no
    recompilation. ``get_code`` (``runpy`` for ``python -m`` and multiprocessing spawn) returns code compiled from the
    source with the merge built in, because ``runpy`` reads the code object and never calls ``exec_module``.
    """

    def __init__(self, inner: object, fullname: str) -> None:
        self._inner = inner
        self._fullname = fullname

    def __getattr__(self, name: str) -> object:
        if name == "_inner":  # not yet set (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"<gim_plugins HookedLoader of {self._inner!r}>"

    def create_module(self, spec: object) -> object:
        create = getattr(self._inner, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: object) -> None:
        if _fallback_needed(self._fullname) and self._source_available():
            code = self._transformed(merge=False)
            exec(code, module.__dict__)
        else:
            self._inner.exec_module(module)  # type: ignore[attr-defined]
        _after_exec(self._fullname, module)

    def get_code(self, fullname: str) -> object:
        if fullname == self._fullname and fullname in CONF_MODULES and self._source_available():
            try:
                return self._transformed(merge=True)
            except SyntaxError:
                raise
            except Exception as exc:  # never worse than the host without plugins
                _warn(f"cannot add plugin confs to {fullname} ({type(exc).__name__}: {exc})", key=f"code:{fullname}")
        return self._inner.get_code(fullname)  # type: ignore[attr-defined]

    def _source_available(self) -> bool:
        return hasattr(self._inner, "get_source") and hasattr(self._inner, "get_filename")

    def _transformed(self, *, merge: bool) -> object:
        inner = self._inner
        source = inner.get_source(self._fullname)  # type: ignore[attr-defined]
        filename = inner.get_filename(self._fullname)  # type: ignore[attr-defined]
        if not merge:  # import path: the merge runs after execution, only the fallbacks go into the code
            import ast

            tree = ast.parse(source, filename)
            for required, stand_in in import_fallbacks(self._fullname).items():
                _wrap_import(tree, required, stand_in)
            return compile(tree, filename, "exec", dont_inherit=True)
        return transform_source(source, filename, self._fullname, fallbacks=_fallback_needed(self._fullname))


class ShimLoader:
    """Serves ``<host package>.<name>`` as a module holding the entry point's class, re-homed into that module."""

    def __init__(self, entry_point: object, group: str) -> None:
        self.entry_point = entry_point
        self.group = group

    def create_module(self, spec: object) -> None:
        return None

    def exec_module(self, module: object) -> None:
        ep = self.entry_point
        try:
            target = ep.load()  # type: ignore[attr-defined]
        except Exception as exc:
            _warn(f"{module.__name__} ({_describe(ep)}) failed to load: {type(exc).__name__}: {exc}",
                  key=f"model:{self.group}:{ep.name}")  # type: ignore[attr-defined]
            raise ImportError(f"{module.__name__} is provided by {_describe(ep)}, which failed to load: {exc}",
                              name=module.__name__) from exc
        if not isinstance(target, type):
            raise ImportError(f"{module.__name__}: {_describe(ep)} is {target!r}, not a class", name=module.__name__)
        namespace = {"__module__": module.__name__, "__qualname__": target.__qualname__, "__doc__": target.__doc__}
        shim = type(target)(target.__name__, (target,), namespace)  # the class's own metaclass (hloc: ABCMeta)
        module.__dict__[target.__name__] = shim
        module.__doc__ = f"Served by gim_plugins._bootstrap from {_describe(ep)} (group {self.group!r})."


def find_spec(fullname: str, path: object = None, target: object = None) -> object:
    """The finder's work for a name :mod:`gim_plugins._bootstrap` forwarded (a hooked module or a model module)."""
    if fullname in HOOKED:
        spec = _others(fullname, path, target)
        if spec is not None and spec.loader is not None:  # type: ignore[attr-defined]
            spec.loader = HookedLoader(spec.loader, fullname)  # type: ignore[attr-defined]
        return spec
    parent, _, child = fullname.rpartition(".")
    group = MODEL_PACKAGES.get(parent)
    if group is None:
        return None
    if _others(fullname, path, target) is not None:
        return None  # the host's own module of that name wins; let the normal machinery load it
    ep = entry_points(group).get(child)
    if ep is None:
        return None
    from importlib.machinery import ModuleSpec

    return ModuleSpec(fullname, ShimLoader(ep, group), origin=f"entry point {ep.value}")  # type: ignore[attr-defined]


def _others(fullname: str, path: object, target: object) -> object:
    """The spec the other meta-path finders give (our own finder skipped)."""
    for finder in sys.meta_path:
        if getattr(finder, "_gim_plugins_finder", False):
            continue
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        spec = find(fullname, path, target)
        if spec is not None:
            return spec
    return None


def invalidate_caches() -> None:
    """Forget the entry-point scan (``importlib.invalidate_caches()`` after installing a plugin)."""
    global _installed
    _installed = None
    _groups.clear()


def hook_imported_modules() -> None:
    """Apply the hooks to host modules imported before the finder was installed."""
    for fullname in HOOKED:
        module = sys.modules.get(fullname)
        if module is not None:
            _after_exec(fullname, module)
