"""The layers of ``docs/architecture.md``, checked on the source with ``ast`` (works before every subpackage exists).

core ← host adapters ← pipelines ← cli: a module may name modules of its own layer or of layers below, never above.

- core: ``types conf errors io geometry weights models registry matching features h5io viz datasets atomic world
  machine _bootstrap _host_hooks export`` (and the package ``__init__``); its modules may use each other.
- host adapters: ``hloc_ext kornia_ext colmap_ext``; they never name each other.
- pipelines: ``zeb reconstruct training app view`` (subpackages such as ``training.video`` belong to their unit);
  they may use any adapter, and no other pipeline except ``training`` → ``zeb``.
- cli: ``gim_plugins.cli`` and ``gim_plugins.__main__``; pipelines add subcommands through the entry-point group
  ``gim_plugins.cli`` and never import ``gim_plugins.cli``.
- hloc only inside ``hloc_ext``; pycolmap only in ``colmap_ext/_pycolmap.py``; torchvision nowhere.
- ``gim_plugins/__init__.py``, ``_bootstrap.py`` and ``_host_hooks.py`` import only the standard library.

"Naming" a module covers every way of reaching it: ``import``/``from … import`` (relative ones too, and those under
``if TYPE_CHECKING:``), ``importlib.import_module("…")``/``import_module("…")``/``__import__("…")`` with a string
literal, any string literal of the form ``"pkg.mod:attr"`` (an entry-point-like target), and any string literal that
is a dotted name starting with ``gim_plugins.`` (a table of module names). Prose that mentions a module is not a
name. The entry points declared in ``pyproject.toml`` are checked per group. Negative tests at the end feed the checker
synthetic packages to prove each rule fires.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "gim_plugins"

LAYERS = {
    "core": ("types", "conf", "errors", "io", "geometry", "weights", "models", "registry", "matching", "features",
             "h5io", "viz", "datasets", "atomic", "world", "machine", "_bootstrap", "_host_hooks", "export"),
    "adapter": ("hloc_ext", "kornia_ext", "colmap_ext"),
    "pipeline": ("zeb", "reconstruct", "training", "app", "view"),
    "cli": ("cli", "__main__"),
}
RANK = {layer: rank for rank, layer in enumerate(LAYERS)}
UNIT_LAYER = {unit: layer for layer, units in LAYERS.items() for unit in units}
ALLOWED_PIPELINE_USES = {"training": {"zeb"}}
"""Pipeline → the other pipelines it may use (training validates with ZEB's metrics)."""

STDLIB_ONLY = ("gim_plugins", "gim_plugins._bootstrap", "gim_plugins._host_hooks")
_IDENT = r"[A-Za-z_]\w*"
_TARGET = re.compile(rf"^({_IDENT}(?:\.{_IDENT})*):{_IDENT}(?:\.{_IDENT})*$")
_GIM_NAME = re.compile(rf"^gim_plugins(?:\.{_IDENT})+$")
_IMPORT_CALLS = ("import_module", "__import__")
ENTRY_POINT_GROUPS = frozenset({"gim_plugins.matchers", "gim_plugins.exporters"})
"""Entry-point group names that look like module names but are not modules (``gim_plugins.cli`` is both: as a
string it counts as naming the cli, so only the cli reads that group)."""
IMPORTS_NAME = "imports the name"
"""How ``from a import b`` names ``a.b``: a submodule, or just an attribute of ``a`` (then ``a`` is what counts)."""


# --------------------------------------------------------------------------------------------------- the checker


def unit_of(module: str) -> tuple[str | None, str]:
    """``(layer, unit)`` of a ``gim_plugins`` module: unit = the top-level module or subpackage it belongs to."""
    parts = module.split(".")
    if len(parts) == 1:
        return "core", ""  # the package __init__
    return UNIT_LAYER.get(parts[1]), parts[1]


def modules(root: Path) -> list[tuple[str, Path]]:
    """``(dotted name, path)`` of every module under ``root`` (a directory named ``gim_plugins``)."""
    out = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return out


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """All nodes except those inside ``if TYPE_CHECKING:`` blocks (never executed)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    package = module if is_package else module.rpartition(".")[0]
    base = package.split(".")
    base = base[: len(base) - level + 1]
    return ".".join(base + ([name] if name else []))


def references(module: str, source: str, *, is_package: bool, runtime_only: bool = False) -> set[tuple[str, str]]:
    """``{(named module, how)}`` for one module's source; see the module docstring for what counts as naming."""
    tree = ast.parse(source)
    found: set[tuple[str, str]] = set()
    import_arguments: set[int] = set()  # string literals already counted as the argument of an import call
    for node in _runtime_nodes(tree) if runtime_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name, "imports") for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = (_absolute(module, is_package, node.level, node.module) if node.level else node.module) or ""
            found.add((target, "imports"))
            found.update((f"{target}.{alias.name}", IMPORTS_NAME) for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and _is_import_call(node.func):
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                import_arguments.add(id(first))
                name = first.value
                if name.startswith("."):
                    level = len(name) - len(name.lstrip("."))
                    name = _absolute(module, is_package, level, name.lstrip(".") or None)
                found.add((name, "imports by string"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in import_arguments:
            target = _TARGET.match(node.value)
            if target:
                found.add((target.group(1), f"names {node.value!r}, a target in"))
            elif _GIM_NAME.match(node.value) and node.value not in ENTRY_POINT_GROUPS:
                found.add((node.value, "names in a string"))
    return found


def _is_import_call(func: ast.expr) -> bool:
    return (isinstance(func, ast.Name) and func.id in _IMPORT_CALLS) or (
        isinstance(func, ast.Attribute) and func.attr == "import_module")


def problems(module: str, refs: set[tuple[str, str]]) -> list[str]:
    """Every broken rule of one module, as sentences naming the module, the target and the rule."""
    layer, unit = unit_of(module)
    if layer is None:
        return [f"{module} is in no layer: add {unit!r} to docs/architecture.md and LAYERS in this test"]
    out = []
    for target, how in sorted(refs):
        top = target.split(".")[0]
        if top == "gim_plugins":
            out += _layer_problems(module, layer, unit, target, how)
        elif top == "hloc" and unit != "hloc_ext":
            out.append(f"{module} {how} {target}: hloc is used only inside gim_plugins.hloc_ext")
        elif top == "pycolmap" and module != "gim_plugins.colmap_ext._pycolmap":
            out.append(f"{module} {how} {target}: pycolmap is used only in gim_plugins/colmap_ext/_pycolmap.py")
        elif top == "torchvision":
            out.append(f"{module} {how} {target}: gim-plugins never uses torchvision")
    return out


def _layer_problems(module: str, layer: str, unit: str, target: str, how: str) -> list[str]:
    target_layer, target_unit = unit_of(target)
    if target_layer is None:
        return [] if how == IMPORTS_NAME else [f"{module} {how} {target}, which is in no layer"]
    if RANK[target_layer] > RANK[layer]:
        return [f"{module} ({layer}) {how} {target} ({target_layer}): arrows point down only "
                f"(core ← adapter ← pipeline ← cli)"]
    if target_layer != layer or target_unit == unit or layer in ("core", "cli"):
        return []
    if layer == "adapter":
        return [f"{module} {how} {target}: host adapters never use each other"]
    if target_unit not in ALLOWED_PIPELINE_USES.get(unit, set()):
        return [f"{module} {how} {target}: pipeline {unit} may not use pipeline {target_unit}"]
    return []


def check_package(root: Path) -> dict[str, list[str]]:
    """``{module: problems}`` for every module under ``root`` that breaks a rule."""
    out = {}
    for name, path in modules(root):
        found = problems(name, references(name, path.read_text(), is_package=path.name == "__init__.py"))
        if found:
            out[name] = found
    return out


def _module_exists(root: Path, module: str) -> bool:
    path = root.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def entry_point_problems(group: str, name: str, value: str, root: Path = PACKAGE) -> list[str]:
    """Where an entry point of ``pyproject.toml`` may point: the package that owns its group, never above."""
    module, _, attr = value.partition(":")
    where = f"entry point {group}: {name} = {value}"
    if module.split(".")[0] != "gim_plugins" or unit_of(module)[0] is None:
        return [f"{where}: points outside the layers of gim_plugins"]
    if not _module_exists(root, module):
        return [f"{where}: module {module} does not exist"]
    layer, unit = unit_of(module)
    if group == "console_scripts":
        ok, rule = layer == "cli", "the console script is the cli"
    elif group == "gim_plugins.cli":
        ok, rule = layer != "cli" and attr == "register", "a subcommand is a register(subparsers) below the cli"
    elif group.startswith("hloc."):
        ok, rule = unit == "hloc_ext", "hloc's groups point into gim_plugins.hloc_ext"
    elif group == "kornia.feature":
        ok, rule = unit == "kornia_ext", "kornia.feature points into gim_plugins.kornia_ext"
    elif group == "gim_plugins.matchers":
        ok, rule = unit == "models", "matchers are core models (gim_plugins.models)"
    elif group == "gim_plugins.exporters":
        ok, rule = layer == "adapter", "exporters live in a host adapter"
    else:
        return [f"{where}: group {group!r} has no rule; add one to docs/architecture.md and this test"]
    return [] if ok else [f"{where}: {rule}"]


def pyproject_entry_points() -> list[tuple[str, str, str]]:
    """``(group, name, value)`` of every entry point and console script ``pyproject.toml`` declares."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        pytest.skip("tomllib needs Python 3.11")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    out = [("console_scripts", name, value) for name, value in project.get("scripts", {}).items()]
    for group, entries in project.get("entry-points", {}).items():
        out += [(group, name, value) for name, value in entries.items()]
    return out


# ------------------------------------------------------------------------------------------------ the real tree

MODULES = modules(PACKAGE)


@pytest.mark.parametrize(("name", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_feature_layers_of_every_module(name, path):
    found = problems(name, references(name, path.read_text(), is_package=path.name == "__init__.py"))
    assert not found, found


ENTRY_POINTS = pyproject_entry_points() if sys.version_info >= (3, 11) else []


@pytest.mark.parametrize(("group", "name", "value"), ENTRY_POINTS, ids=[f"{g}:{n}" for g, n, _ in ENTRY_POINTS])
def test_feature_entry_points_point_into_their_layer(group, name, value):
    assert entry_point_problems(group, name, value) == []


def test_cardinality_group_names_are_not_module_names():
    """Strings naming a group of ``ENTRY_POINT_GROUPS`` are exempt, so none of them may be a real module."""
    if not ENTRY_POINTS:
        pytest.skip("reading pyproject.toml needs tomllib (Python 3.11)")
    groups = {group for group, _, _ in ENTRY_POINTS if group.startswith("gim_plugins.")}
    assert groups - ENTRY_POINT_GROUPS == {"gim_plugins.cli"}
    assert not any(_module_exists(PACKAGE, group) or unit_of(group)[0] for group in ENTRY_POINT_GROUPS)


def test_cardinality_every_subpackage_has_a_layer():
    """A subpackage (``training/video/``) belongs to the layer of its top-level unit; none is outside the layers."""
    packages = sorted({name for name, path in MODULES if path.name == "__init__.py" and "." in name})
    assert "gim_plugins.training.video" in packages
    assert {name: unit_of(name)[0] for name in packages if unit_of(name)[0] is None} == {}
    assert unit_of("gim_plugins.training.video.propagate") == ("pipeline", "training")


def test_cardinality_every_layer_is_in_the_architecture_doc():
    doc = (REPO / "docs" / "architecture.md").read_text()
    missing = [unit for units in LAYERS.values() for unit in units if f"`{unit}`" not in doc]
    assert missing == []


@pytest.mark.parametrize("name", STDLIB_ONLY)
def test_feature_bootstrap_modules_are_stdlib_only(name):
    path = dict(MODULES).get(name)
    if path is None:
        pytest.skip(f"{name} does not exist")
    refs = references(name, path.read_text(), is_package=path.name == "__init__.py", runtime_only=True)
    third_party = {target.split(".")[0] for target, _ in refs} - set(sys.stdlib_module_names) - {"__future__",
                                                                                                  "gim_plugins"}
    assert third_party == set()


# ----------------------------------------------------------------------------------- the checker on fake packages


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "gim_plugins"
    for directory in {"", "cli", "zeb", "reconstruct", "training", "hloc_ext", "kornia_ext", "colmap_ext", "models"}:
        (root / directory).mkdir(parents=True, exist_ok=True)
        (root / directory / "__init__.py").write_text("")
    for relative, source in files.items():
        (root / relative).write_text(source)
    return root


BROKEN = {
    "pipeline imports the cli": ("zeb/bad.py", "from gim_plugins.cli.match_cmd import run_match\n",
                                 "arrows point down only"),
    "pipeline imports the cli package": ("zeb/bad.py", "from gim_plugins import cli\n", "gim_plugins.cli (cli)"),
    "pipeline imports the cli relatively": ("zeb/bad.py", "from ..cli import main\n", "gim_plugins.cli.main"),
    "pipeline imports the cli by string": ("zeb/bad.py", "import importlib\nimportlib.import_module("
                                           "'gim_plugins.cli')\n", "imports by string gim_plugins.cli"),
    "pipeline names a cli target": ("reconstruct/bad.py", "MAIN = 'gim_plugins.cli:main'\n",
                                    "names 'gim_plugins.cli:main', a target in gim_plugins.cli (cli)"),
    "pipeline imports the cli when type checking": (
        "zeb/bad.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gim_plugins.cli import main\n",
        "arrows point down only"),
    "core names an adapter module in a string": (
        "_host_hooks.py", "TABLE = {'hloc.match_dense': {'x': 'gim_plugins.hloc_ext.torchvision_compat'}}\n",
        "names in a string gim_plugins.hloc_ext.torchvision_compat"),
    "core names an adapter target": ("matching.py", "DEFAULT = 'gim_plugins.kornia_ext:GIMMatcher'\n",
                                     "(core) names 'gim_plugins.kornia_ext:GIMMatcher', a target in"),
    "core imports a pipeline with __import__": ("registry.py", "__import__('gim_plugins.zeb.metrics')\n",
                                                "imports by string gim_plugins.zeb.metrics (pipeline)"),
    "core imports an adapter": ("io.py", "from gim_plugins.colmap_ext import database\n", "(core) imports"),
    "adapter imports a pipeline": ("colmap_ext/bad.py", "from gim_plugins.zeb import metrics\n",
                                   "(adapter) imports gim_plugins.zeb"),
    "adapter imports a pipeline relatively": ("hloc_ext/bad.py", "from ..reconstruct import pairs\n",
                                              "(adapter) imports gim_plugins.reconstruct"),
    "adapter imports another adapter": ("kornia_ext/bad.py", "import gim_plugins.hloc_ext.matchers\n",
                                        "host adapters never use each other"),
    "pipeline imports another pipeline": ("reconstruct/bad.py", "from gim_plugins.zeb import runner\n",
                                          "pipeline reconstruct may not use pipeline zeb"),
    "hloc outside hloc_ext": ("colmap_ext/bad.py", "import hloc.utils.io\n", "hloc is used only inside"),
    "hloc by string outside hloc_ext": ("matching.py", "from importlib import import_module\n"
                                        "import_module('hloc.match_dense')\n", "hloc is used only inside"),
    "pycolmap outside _pycolmap": ("colmap_ext/database.py", "import pycolmap\n", "pycolmap is used only in"),
    "torchvision anywhere": ("hloc_ext/bad.py", "import torchvision.transforms.functional as F\n",
                             "never uses torchvision"),
    "a module in no layer": ("newthing.py", "X = 1\n", "is in no layer"),
    "a name in no layer": ("conf.py", "NAME = 'gim_plugins.nowhere.thing'\n", "which is in no layer"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_exception_checker_fires(tmp_path, case):
    relative, source, expected = BROKEN[case]
    found = check_package(_fake_package(tmp_path, {relative: source}))
    module = "gim_plugins." + relative.removesuffix(".py").replace("/", ".")
    assert module in found, found
    assert any(expected in problem for problem in found[module]), found[module]


ALLOWED = {
    "training/uses_zeb.py": "from gim_plugins.zeb.metrics import pose_auc\n",
    "reconstruct/uses_adapters.py": "from gim_plugins.colmap_ext import database\nfrom gim_plugins import hloc_ext\n",
    "zeb/uses_core.py": "from gim_plugins.errors import UserError\nfrom gim_plugins.conf import parse_conf\n",
    "hloc_ext/uses_hloc.py": "import hloc\nfrom gim_plugins import _host_hooks\n",
    "colmap_ext/_pycolmap.py": "import pycolmap\n",
    "cli/uses_everything.py": "import gim_plugins.zeb\nimport gim_plugins.colmap_ext\nfrom . import sibling\n",
    "cli/sibling.py": "",
    "_host_hooks.py": '"""Serves gim_plugins.hloc_ext.torchvision_compat when asked (prose is not a name)."""\n'
                      "HOOKED = {'hloc.match_dense': 'hloc.match_dense.confs'}\nDEVICE = 'cuda:0'\n",
    "matching.py": "from gim_plugins.registry import get\nfrom .io import read_image\n"
                   "LAZY = {'load': 'gim_plugins.models.base'}\n",
}


def test_smoke_checker_accepts_the_allowed_arrows(tmp_path):
    assert check_package(_fake_package(tmp_path, ALLOWED)) == {}


@pytest.mark.parametrize(("group", "value", "expected"), [
    ("gim_plugins.cli", "gim_plugins.cli.match_cmd:register", "below the cli"),
    ("gim_plugins.cli", "gim_plugins.zeb.cli:main", "register(subparsers)"),
    ("hloc.matchers", "gim_plugins.models.gim_dkm:GIMDKM", "point into gim_plugins.hloc_ext"),
    ("hloc.match_dense.import_fallbacks", "gim_plugins.kornia_ext.matchers", "point into gim_plugins.hloc_ext"),
    ("kornia.feature", "gim_plugins.hloc_ext.matchers:GIMMatcher", "points into gim_plugins.kornia_ext"),
    ("gim_plugins.matchers", "gim_plugins.hloc_ext.matchers:Matcher", "core models"),
    ("gim_plugins.exporters", "gim_plugins.zeb.dumps:export", "live in a host adapter"),
    ("console_scripts", "gim_plugins.zeb.cli:main", "the console script is the cli"),
    ("gim_plugins.new_group", "gim_plugins.models.gim_dkm:GIMDKM", "has no rule"),
    ("gim_plugins.matchers", "gim_plugins.models.no_such_module:X", "does not exist"),
    ("gim_plugins.matchers", "other_package.models:X", "points outside"),
])
def test_exception_entry_point_rules_fire(tmp_path, group, value, expected):
    root = _fake_package(tmp_path, {"models/gim_dkm.py": "", "zeb/cli.py": "", "zeb/dumps.py": "",
                                    "cli/match_cmd.py": "", "hloc_ext/matchers.py": "",
                                    "kornia_ext/matchers.py": ""})
    found = entry_point_problems(group, "name", value, root)
    assert len(found) == 1 and expected in found[0], found


def test_smoke_entry_point_rules_accept_the_owned_groups(tmp_path):
    root = _fake_package(tmp_path, {"zeb/cli.py": "", "hloc_ext/confs.py": "", "hloc_ext/compat.py": "",
                                    "models/gim_dkm.py": "", "colmap_ext/exporters.py": ""})
    for group, value in [("gim_plugins.cli", "gim_plugins.zeb.cli:register"),
                         ("gim_plugins.cli", "gim_plugins.colmap_ext:register"),
                         ("hloc.match_dense.confs", "gim_plugins.hloc_ext.confs:GIM_DKM"),
                         ("hloc.match_dense.import_fallbacks", "gim_plugins.hloc_ext.compat"),
                         ("kornia.feature", "gim_plugins.kornia_ext:GIMMatcher"),
                         ("gim_plugins.matchers", "gim_plugins.models.gim_dkm:GIMDKM"),
                         ("gim_plugins.exporters", "gim_plugins.colmap_ext.exporters:export"),
                         ("console_scripts", "gim_plugins.cli:main")]:
        assert entry_point_problems(group, "name", value, root) == [], (group, value)
