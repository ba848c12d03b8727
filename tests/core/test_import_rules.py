"""The import DAG of style.md §4.2, checked on the source with ``ast`` (works before every subpackage exists).

- The core never imports an integration subpackage (hloc_ext, kornia_ext, colmap_ext, zeb, reconstruct, training).
- hloc only inside ``gim_plugins.hloc_ext``; pycolmap only in ``gim_plugins/colmap_ext/_pycolmap.py``.
- Integration siblings do not import each other (training may use zeb, reconstruct colmap_ext, nothing else).
- Nothing imports torchvision; ``gim_plugins/__init__.py`` and ``_bootstrap.py`` import only the standard library.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gim_plugins"
INTEGRATIONS = ("hloc_ext", "kornia_ext", "colmap_ext", "zeb", "reconstruct", "training")
ALLOWED_SIBLINGS = {"training": {"zeb"}, "reconstruct": {"colmap_ext"}}  # the pipeline on its adapter


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, path))
    return out


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """All nodes except those inside ``if TYPE_CHECKING:`` blocks (never executed)."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def _imports(name: str, path: Path, *, runtime_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _runtime_nodes(tree) if runtime_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _integration_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "gim_plugins" and parts[1] in INTEGRATIONS else None


MODULES = _modules()


@pytest.mark.parametrize(("name", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_feature_import_rules(name, path):
    imports = _imports(name, path)
    owner = _integration_of(name)
    problems = []
    for imported in imports:
        top = imported.split(".")[0]
        target = _integration_of(imported)
        if owner is None and target is not None:
            problems.append(f"core imports integration subpackage {imported}")
        if owner is not None and target is not None and target != owner and target not in ALLOWED_SIBLINGS.get(
                owner, set()):
            problems.append(f"{owner} imports sibling {imported}")
        if top == "hloc" and owner != "hloc_ext":
            problems.append(f"imports hloc outside hloc_ext: {imported}")
        if top == "pycolmap" and name != "gim_plugins.colmap_ext._pycolmap":
            problems.append(f"imports pycolmap outside colmap_ext/_pycolmap.py: {imported}")
        if top == "torchvision":
            problems.append("imports torchvision")
    assert not problems, problems


@pytest.mark.parametrize("name", ["gim_plugins", "gim_plugins._bootstrap", "gim_plugins._host_hooks"])
def test_feature_bootstrap_modules_are_stdlib_only(name):
    path = dict(MODULES).get(name)
    if path is None:
        pytest.skip(f"{name} does not exist")
    imported = {m.split(".")[0] for m in _imports(name, path, runtime_only=True)}
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "gim_plugins"}
    assert third_party == set(), third_party
