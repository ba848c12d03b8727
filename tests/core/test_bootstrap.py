"""The host hooks of ``gim_plugins._bootstrap``, against stand-in ``hloc`` and ``kornia`` packages.

Each test writes, into a temporary directory, packages with the import structure the hooks rely on (hloc's
``confs`` dicts, ``hloc.matchers`` + ``dynamic_load``, an argparse ``__main__`` block; ``kornia.feature``) and a
plugin distribution (a ``*.dist-info`` with ``entry_points.txt``), then runs Python in a subprocess with that directory
first on ``PYTHONPATH``. No hloc or kornia code is copied; the stand-ins are written from the contract the hooks rely
on, as the module docstring of ``gim_plugins._host_hooks`` states it: hloc's top-level ``confs`` dicts read by
argparse under ``python -m`` (run by ``runpy``), ``hloc.utils.base_model.dynamic_load`` looking for exactly one
``BaseModel`` subclass in ``hloc.<package>.<name>``, and ``kornia.feature`` attributes. These tests are cheap and
always run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

STANDIN_BASE_MODEL = '''
import inspect
from abc import ABCMeta, abstractmethod


class BaseModel(metaclass=ABCMeta):
    default_conf = {}
    required_inputs = []

    def __init__(self, conf):
        self.conf = conf = {**self.default_conf, **conf}
        self._init(conf)

    @abstractmethod
    def _init(self, conf): ...


def dynamic_load(root, model):
    module_path = f"{root.__name__}.{model}"
    module = __import__(module_path, fromlist=[""])
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if c.__module__ == module_path and issubclass(c, BaseModel)]
    assert len(classes) == 1, classes
    return classes[0]
'''

STANDIN_STEP = '''
import argparse
import json
{extra_imports}
{confs_name} = {{
    "builtin": {{"output": "builtin-out", "model": {{"name": "builtin_nn"}}}},
}}


def main(conf):
    return conf["output"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--conf", choices=list({confs_name}.keys()))
    args = parser.parse_args()
    print("CONFS=" + json.dumps(sorted({confs_name})))
    if args.conf:
        print("OUTPUT=" + main({confs_name}[args.conf]))
'''

PLUGIN_MODELS = '''
from hloc.utils.base_model import BaseModel


class PluginMatcher(BaseModel):
    """A plugin model."""

    def _init(self, conf):
        self.built_with = conf


THING = "the plugin thing"
FAKE_LOFTR = "not kornia's LoFTR"
SUB = "not kornia's submodule"
'''

PLUGIN_CONFS = '''
DENSE = {"output": "plugin-out", "model": {"name": "plugin_model", "option": 1}}
CLASH = {"output": "plugin-clash", "model": {"name": "plugin_model"}}
NOT_A_DICT = ["a", "list"]


def lazy():
    return {"output": "lazy-out", "model": {"name": "plugin_model"}}


def absent():
    return None
'''

ENTRY_POINTS = '''
[hloc.match_dense.confs]
plugin_dense = plugin_pkg.confs:DENSE
plugin_lazy = plugin_pkg.confs:lazy
plugin_absent = plugin_pkg.confs:absent
builtin = plugin_pkg.confs:CLASH
plugin_broken = plugin_pkg.missing:X
plugin_not_dict = plugin_pkg.confs:NOT_A_DICT

[hloc.match_features.confs]
plugin_sparse = plugin_pkg.confs:DENSE

[hloc.extract_features.confs]
plugin_features = plugin_pkg.confs:DENSE

[hloc.matchers]
plugin_model = plugin_pkg.models:PluginMatcher
builtin_nn = plugin_pkg.models:PluginMatcher
plugin_broken_model = plugin_pkg.missing:Y
plugin_not_class = plugin_pkg.models:THING

[hloc.extractors]
plugin_extractor = plugin_pkg.models:PluginMatcher

[kornia.feature]
PluginThing = plugin_pkg.models:THING
LoFTR = plugin_pkg.models:FAKE_LOFTR
sub = plugin_pkg.models:SUB
BrokenThing = plugin_pkg.missing:Z
'''


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture
def standin(tmp_path: Path) -> Path:
    """Stand-in hloc + kornia + plugin distribution; returns the directory to put on PYTHONPATH."""
    root = tmp_path / "site"
    write(root / "hloc/__init__.py", "")
    write(root / "hloc/utils/__init__.py", "")
    write(root / "hloc/utils/base_model.py", STANDIN_BASE_MODEL)
    write(root / "hloc/matchers/__init__.py", "")
    write(root / "hloc/matchers/builtin_nn.py", "from hloc.utils.base_model import BaseModel\n\n\n"
                                                "class BuiltinNN(BaseModel):\n    def _init(self, conf):\n"
                                                "        pass\n")
    write(root / "hloc/extractors/__init__.py", "")
    for step in ("match_dense", "match_features", "extract_features"):
        write(root / f"hloc/{step}.py", STANDIN_STEP.format(extra_imports="", confs_name="confs"))
    write(root / "kornia/__init__.py", "from . import feature\n")
    write(root / "kornia/feature/__init__.py", 'LoFTR = "kornia\'s LoFTR"\n__all__ = ["LoFTR"]\n')
    write(root / "kornia/feature/sub.py", 'WHAT = "kornia\'s submodule"\n')
    write(root / "plugin_pkg/__init__.py", "")
    write(root / "plugin_pkg/models.py", PLUGIN_MODELS)
    write(root / "plugin_pkg/confs.py", PLUGIN_CONFS)
    write(root / "plugin_pkg-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: plugin-pkg\nVersion: 0.1\n")
    write(root / "plugin_pkg-0.1.dist-info/entry_points.txt", ENTRY_POINTS)
    return root


def run(root: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("GIM_PLUGINS_NO_HOOKS", "PYTHONWARNINGS")}
    full_env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, *args], cwd=root, env=full_env, capture_output=True, text=True,
                          timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def run_code(root: Path, code: str, **kwargs: object) -> subprocess.CompletedProcess:
    return run(root, "-c", textwrap.dedent(code), **kwargs)  # type: ignore[arg-type]


def pth_active() -> bool:
    """Whether ``gim_plugins.pth`` is installed in this interpreter's environment (normal or editable install)."""
    proc = subprocess.run([sys.executable, "-c", "import sys; print('gim_plugins._bootstrap' in sys.modules)"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "GIM_PLUGINS_NO_HOOKS": ""})
    return proc.stdout.strip() == "True"


needs_pth = pytest.mark.skipif(not pth_active(), reason="gim_plugins.pth is not installed (pip install -e . first)")

# Runs the module as `python -m` does (runpy reads the loader's code object) after activating the bootstrap by hand,
# so that the conf-merge path for __main__ is tested whether or not the .pth is installed.
RUN_AS_MAIN = """
import runpy, sys
import gim_plugins._bootstrap
sys.argv = [{module!r}, *{argv!r}]
runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
"""


def confs_line(stdout: str) -> list[str]:
    line = next(line for line in stdout.splitlines() if line.startswith("CONFS="))
    return json.loads(line.removeprefix("CONFS="))


# ----------------------------------------------------------------------------------------------------- conf merge


def test_feature_confs_merged_on_import(standin: Path) -> None:
    proc = run_code(standin, """
        import json
        from hloc import match_dense, match_features, extract_features
        print(json.dumps({m.__name__: m.confs for m in (match_dense, match_features, extract_features)}))
    """)
    confs = json.loads(proc.stdout.strip().splitlines()[-1])
    dense = confs["hloc.match_dense"]
    assert dense["plugin_dense"] == {"output": "plugin-out", "model": {"name": "plugin_model", "option": 1}}
    assert dense["plugin_lazy"]["output"] == "lazy-out"  # a callable entry point is called
    assert "plugin_absent" not in dense  # a callable returning None offers no conf
    assert dense["builtin"]["output"] == "builtin-out"  # clash: the host's own conf wins
    assert "plugin_sparse" in confs["hloc.match_features"]
    assert "plugin_features" in confs["hloc.extract_features"]


def test_feature_confs_merged_for_main_by_runpy(standin: Path) -> None:
    proc = run_code(standin, RUN_AS_MAIN.format(module="hloc.match_dense", argv=["--conf", "plugin_dense"]))
    names = confs_line(proc.stdout)
    assert {"builtin", "plugin_dense", "plugin_lazy"} <= set(names)
    assert "OUTPUT=plugin-out" in proc.stdout  # argparse accepted the plugin conf as a --conf choice


@needs_pth
def test_feature_confs_merged_for_python_dash_m(standin: Path) -> None:
    for step, plugin in (("match_dense", "plugin_dense"), ("match_features", "plugin_sparse"),
                         ("extract_features", "plugin_features")):
        proc = run(standin, "-m", f"hloc.{step}", "--conf", plugin)
        assert plugin in confs_line(proc.stdout)
        assert "OUTPUT=plugin-out" in proc.stdout
    helped = run(standin, "-m", "hloc.match_dense", "--help")
    assert "plugin_dense" in helped.stdout


@needs_pth
def test_feature_python_dash_m_keeps_host_line_numbers(standin: Path) -> None:
    """The injected merge must not shift hloc's line numbers in tracebacks."""
    step = standin / "hloc/match_dense.py"
    step.write_text(step.read_text() + "\nraise RuntimeError('boom')\n")
    last_line = len(step.read_text().splitlines())
    proc = run(standin, "-m", "hloc.match_dense", check=False)
    assert f'match_dense.py", line {last_line}' in proc.stderr


# ------------------------------------------------------------------------------------------------------ model shims


def test_feature_shim_resolves_plugin_models(standin: Path) -> None:
    proc = run_code(standin, """
        import hloc.matchers, hloc.extractors
        from hloc.utils.base_model import dynamic_load
        import plugin_pkg.models as real
        cls = dynamic_load(hloc.matchers, "plugin_model")
        model = cls({"name": "plugin_model", "option": 2})
        print(cls.__module__, cls.__name__, issubclass(cls, real.PluginMatcher), model.built_with["option"])
        ext = dynamic_load(hloc.extractors, "plugin_extractor")
        print(ext.__module__)
        print(dynamic_load(hloc.matchers, "builtin_nn").__name__)
    """)
    lines = proc.stdout.split("\n")
    assert lines[0] == "hloc.matchers.plugin_model PluginMatcher True 2"
    assert lines[1] == "hloc.extractors.plugin_extractor"
    assert lines[2] == "BuiltinNN"  # clash: hloc's own module wins over the plugin's entry point


def test_exception_unknown_model_still_not_found(standin: Path) -> None:
    proc = run_code(standin, """
        import hloc.matchers
        from hloc.utils.base_model import dynamic_load
        try:
            dynamic_load(hloc.matchers, "no_such_model")
        except ModuleNotFoundError as exc:
            print("MNF", exc.name)
    """)
    assert proc.stdout.strip() == "MNF hloc.matchers.no_such_model"


def test_exception_broken_model_names_the_plugin(standin: Path) -> None:
    proc = run_code(standin, """
        import hloc.matchers
        from hloc.utils.base_model import dynamic_load
        for name in ("plugin_broken_model", "plugin_not_class"):
            try:
                dynamic_load(hloc.matchers, name)
            except ImportError as exc:
                print(type(exc).__name__, str(exc))
        print(dynamic_load(hloc.matchers, "plugin_model").__name__)  # other plugins are unaffected
    """)
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("ImportError hloc.matchers.plugin_broken_model is provided by entry point "
                               "plugin_broken_model = plugin_pkg.missing:Y from plugin-pkg 0.1")
    assert lines[1].startswith("ImportError hloc.matchers.plugin_not_class:") and "not a class" in lines[1]
    assert lines[2] == "PluginMatcher"


# ------------------------------------------------------------------------------------------- broken plugins, opt-out


def test_exception_broken_conf_warns_and_host_still_works(standin: Path) -> None:
    proc = run_code(standin, """
        from hloc import match_dense
        print(sorted(match_dense.confs))
        print(match_dense.main(match_dense.confs["builtin"]))
    """)
    assert "RuntimeWarning" in proc.stderr
    assert "'plugin_broken' is broken and was skipped" in proc.stderr
    assert "plugin_pkg.missing:X" in proc.stderr
    assert "'plugin_not_dict' is broken" in proc.stderr and "expected a dict, got list" in proc.stderr
    assert "'plugin_dense'" in proc.stdout and "'plugin_broken'" not in proc.stdout
    assert proc.stdout.strip().endswith("builtin-out")


def test_exception_broken_conf_warns_once_per_process(standin: Path) -> None:
    proc = run_code(standin, """
        import importlib
        from hloc import match_dense
        importlib.reload(match_dense)
    """)
    assert proc.stderr.count("'plugin_broken' is broken") == 1


def test_feature_opt_out_environment_variable(standin: Path) -> None:
    env = {"GIM_PLUGINS_NO_HOOKS": "1"}
    proc = run_code(standin, """
        import sys
        from hloc import match_dense
        import hloc.matchers
        print(sorted(match_dense.confs), any(getattr(f, "_gim_plugins_finder", False) for f in sys.meta_path))
        try:
            import hloc.matchers.plugin_model
        except ModuleNotFoundError:
            print("no shim")
    """, env=env)
    assert proc.stdout.splitlines()[0] == "['builtin'] False"
    assert proc.stdout.splitlines()[1] == "no shim"
    explicit = run_code(standin, RUN_AS_MAIN.format(module="hloc.match_dense", argv=[]), env=env)
    assert confs_line(explicit.stdout) == ["builtin"]  # importing the bootstrap by hand installs nothing either
    assert "RuntimeWarning" not in explicit.stderr


def test_exception_duplicate_plugin_name_warns_and_the_first_on_sys_path_wins(standin: Path, tmp_path: Path) -> None:
    later = tmp_path / "later"
    write(later / "later_pkg/__init__.py", "")
    write(later / "later_pkg/confs.py", 'DENSE = {"output": "later-out", "model": {"name": "later"}}\n')
    write(later / "later_pkg-0.1.dist-info/METADATA", "Metadata-Version: 2.1\nName: later-pkg\nVersion: 0.1\n")
    write(later / "later_pkg-0.1.dist-info/entry_points.txt",
          "[hloc.match_dense.confs]\nplugin_dense = later_pkg.confs:DENSE\n")
    proc = run_code(standin, "from hloc import match_dense\nprint(match_dense.confs['plugin_dense']['output'])",
                    env={"PYTHONPATH": os.pathsep.join([str(standin), str(later)])})
    assert proc.stdout.strip() == "plugin-out"
    assert proc.stderr.count("has 'plugin_dense' twice") == 1
    assert "ignoring entry point plugin_dense = later_pkg.confs:DENSE from later-pkg 0.1" in proc.stderr


def test_exception_missing_confs_assignment_warns_once(standin: Path) -> None:
    step = standin / "hloc/match_dense.py"
    step.write_text(STANDIN_STEP.format(extra_imports="", confs_name="CONFIGS"))
    proc = run_code(standin, "from hloc import match_dense\nprint(sorted(match_dense.CONFIGS))")
    assert proc.stdout.strip() == "['builtin']"
    assert proc.stderr.count("has no top-level `confs = ...` assignment") == 1
    main = run_code(standin, RUN_AS_MAIN.format(module="hloc.match_dense", argv=[]))
    assert main.stderr.count("has no top-level `confs = ...` assignment") == 1


# ---------------------------------------------------------------------------------------- torchvision import fallback


def test_feature_torchvision_fallback_only_when_import_fails(standin: Path) -> None:
    step = standin / "hloc/match_dense.py"
    step.write_text(STANDIN_STEP.format(extra_imports="import torchvision.transforms.functional as F",
                                        confs_name="confs"))
    # a broken torchvision, as a CUDA-only build beside CPU torch fails: RuntimeError at import
    write(standin / "torchvision/__init__.py", "raise RuntimeError('operator torchvision::nms does not exist')\n")
    code = "from hloc import match_dense\nprint(match_dense.F.__name__, 'plugin_dense' in match_dense.confs)"
    proc = run_code(standin, code)
    assert proc.stdout.strip() == "gim_plugins.hloc_ext.torchvision_compat True"
    main = run_code(standin, RUN_AS_MAIN.format(module="hloc.match_dense", argv=[]))
    assert "plugin_dense" in confs_line(main.stdout)
    # a working torchvision is used as is
    write(standin / "torchvision/__init__.py", "")
    write(standin / "torchvision/transforms/__init__.py", "")
    write(standin / "torchvision/transforms/functional.py", "def resize(img, size):\n    return img\n")
    proc = run_code(standin, code)
    assert proc.stdout.strip() == "torchvision.transforms.functional True"


def test_feature_import_fallbacks_are_declared_by_plugins(standin: Path) -> None:
    """The fallback table is entry-point data: any plugin declares a stand-in; malformed entries warn, are skipped."""
    step = standin / "hloc/match_features.py"
    step.write_text(STANDIN_STEP.format(extra_imports="import missing_dependency as dep", confs_name="confs"))
    write(standin / "plugin_pkg/standin_dep.py", "WHO = 'the plugin stand-in'\n")
    entry_points = standin / "plugin_pkg-0.1.dist-info/entry_points.txt"
    entry_points.write_text(entry_points.read_text() + "\n[hloc.match_features.import_fallbacks]\n"
                            "missing_dependency = plugin_pkg.standin_dep\nnot-a-module = plugin_pkg.standin_dep\n")
    proc = run_code(standin, "from hloc import match_features\n"
                             "print(match_features.dep.WHO, 'plugin_sparse' in match_features.confs)")
    assert proc.stdout.strip() == "the plugin stand-in True"
    assert proc.stderr.count("is not `module = stand-in module` and was ignored") == 1
    assert "not-a-module = plugin_pkg.standin_dep" in proc.stderr
    main = run_code(standin, RUN_AS_MAIN.format(module="hloc.match_features", argv=[]))
    assert "plugin_sparse" in confs_line(main.stdout)


def test_feature_hloc_adapter_declares_the_torchvision_fallback() -> None:
    """gim-plugins' own stand-in comes from its installed entry points, not from a table in the core."""
    from gim_plugins import _host_hooks

    _host_hooks.invalidate_caches()
    assert _host_hooks.import_fallbacks("hloc.match_dense") == {
        "torchvision.transforms.functional": "gim_plugins.hloc_ext.torchvision_compat"}
    assert _host_hooks.import_fallbacks("kornia.feature") == {}  # kornia.feature's import never reads entry points


def test_feature_function_wrappers_for_import_and_python_dash_m(standin: Path) -> None:
    """A plugin's ``hloc.<step>.wrappers`` entry replaces the step's function, for ``import`` and ``python -m``;
    the host's own callers (its ``__main__`` block) go through the replacement, which can call the original."""
    write(standin / "plugin_pkg/wrap.py", """
        def wrap_main(original):
            def main(conf):
                return "wrapped-" + original(conf)
            return main


        def broken(original):
            raise RuntimeError("cannot wrap")
    """)
    entry_points = standin / "plugin_pkg-0.1.dist-info/entry_points.txt"
    entry_points.write_text(entry_points.read_text() + "\n[hloc.match_dense.wrappers]\n"
                            "main = plugin_pkg.wrap:wrap_main\nnot_in_module = plugin_pkg.wrap:wrap_main\n"
                            "\n[hloc.match_features.wrappers]\nmain = plugin_pkg.wrap:broken\n")
    proc = run_code(standin, """
        from hloc import match_dense, match_features
        print(match_dense.main(match_dense.confs["builtin"]), match_features.main(match_features.confs["builtin"]),
              hasattr(match_dense, "not_in_module"))
    """)
    assert proc.stdout.split() == ["wrapped-builtin-out", "builtin-out", "False"]
    assert proc.stderr.count("hloc.match_features.main is left as it is") == 1 and "cannot wrap" in proc.stderr
    main = run_code(standin, RUN_AS_MAIN.format(module="hloc.match_dense", argv=["--conf", "builtin"]))
    assert "OUTPUT=wrapped-builtin-out" in main.stdout.splitlines()
    main = run_code(standin, RUN_AS_MAIN.format(module="hloc.match_features", argv=["--conf", "builtin"]))
    assert "OUTPUT=builtin-out" in main.stdout.splitlines()
    off = run_code(standin, "from hloc import match_dense\nprint(match_dense.main(match_dense.confs['builtin']))",
                   env={"GIM_PLUGINS_NO_HOOKS": "1"})
    assert off.stdout.strip() == "builtin-out"


def test_feature_hloc_adapter_declares_the_match_dense_wrapper() -> None:
    from gim_plugins import _host_hooks

    _host_hooks.invalidate_caches()
    declared = _host_hooks.entry_points("hloc.match_dense.wrappers")
    assert {name: ep.value for name, ep in declared.items()} == {  # type: ignore[attr-defined]
        "match_dense": "gim_plugins.hloc_ext.batched:wrap_match_dense"}


# ---------------------------------------------------------------------------------------------------- kornia.feature


def test_feature_kornia_attribute_hook(standin: Path) -> None:
    proc = run_code(standin, """
        import kornia
        import kornia.feature as KF
        from kornia.feature import PluginThing
        print(PluginThing)
        print(KF.LoFTR)
        print("PluginThing" in dir(KF), "LoFTR" in dir(KF))
        import kornia.feature.sub
        print(KF.sub.WHAT)
        try:
            KF.NoSuchThing
        except AttributeError as exc:
            print("AttributeError", exc)
    """)
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "the plugin thing"
    assert lines[1] == "kornia's LoFTR"  # clash: kornia's own attribute wins
    assert lines[2] == "True True"
    assert lines[3] == "kornia's submodule"  # clash: kornia's own submodule wins
    assert lines[4] == "AttributeError module 'kornia.feature' has no attribute 'NoSuchThing'"


def test_exception_kornia_broken_attribute_warns(standin: Path) -> None:
    proc = run_code(standin, """
        import kornia.feature as KF
        print(hasattr(KF, "BrokenThing"), KF.PluginThing)
    """)
    assert proc.stdout.strip() == "False the plugin thing"
    assert "RuntimeWarning" in proc.stderr and "plugin_pkg.missing:Z" in proc.stderr


def test_feature_kornia_hook_chains_existing_getattr(standin: Path) -> None:
    write(standin / "kornia/feature/__init__.py", """
        def __getattr__(name):
            if name == "Deprecated":
                return "kornia's own __getattr__"
            raise AttributeError(name)
    """)
    proc = run_code(standin, "import kornia.feature as KF\nprint(KF.Deprecated, '|', KF.PluginThing)")
    assert proc.stdout.strip() == "kornia's own __getattr__ | the plugin thing"


# ------------------------------------------------------------------------------------------------ start-up hygiene


def test_cardinality_start_up_tables_match_the_hooks() -> None:
    """The start-up finder forwards exactly the names the hooks implement."""
    from gim_plugins import _bootstrap, _host_hooks

    assert _bootstrap.HOOKED_MODULES == _host_hooks.HOOKED
    assert _bootstrap.MODEL_PACKAGES == set(_host_hooks.MODEL_PACKAGES)
    assert set(_host_hooks.FALLBACK_GROUPS) <= _host_hooks.HOOKED


def test_smoke_bootstrap_imports_only_the_standard_library() -> None:
    code = """
        import sys
        before = set(sys.modules)
        import gim_plugins._bootstrap
        new = sorted(set(sys.modules) - before)
        foreign = [m for m in new if m.split(".")[0] not in sys.stdlib_module_names
                   and m not in ("gim_plugins", "gim_plugins._bootstrap")]
        import gim_plugins._host_hooks
        hooks = sorted(set(sys.modules) - before - set(new))
        foreign += [m for m in hooks if m.split(".")[0] not in sys.stdlib_module_names
                    and m != "gim_plugins._host_hooks"]
        print(foreign, [m for m in new if m in ("typing", "re", "importlib.metadata", "ast")])
    """
    proc = subprocess.run([sys.executable, "-S", "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[] []"  # and nothing costly at start-up


def test_smoke_pth_line_is_silent_without_the_package(tmp_path: Path) -> None:
    """A stale .pth (package removed) must not print a traceback at every interpreter start."""
    line = (Path(__file__).resolve().parents[2] / "gim_plugins.pth").read_text().strip()
    assert line.startswith("import ") and "\n" not in line
    site = tmp_path / "site"
    site.mkdir()
    (site / "stale.pth").write_text(line + "\n")
    code = f"import site; site.addsitedir({str(site)!r}); print('ok')"
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.stdout.strip() == "ok"
    assert proc.stderr == ""


# ------------------------------------------------------------------------------------------------------ packaging


@pytest.mark.slow
def test_feature_wheel_install_activates_pth_and_uninstall_removes_it(standin: Path, tmp_path: Path) -> None:
    """A normal (wheel) install puts gim_plugins.pth at the site-packages root; uninstalling removes it again.

    (The editable install is what the test suite itself runs in: ``needs_pth`` tests cover it.)
    """
    repo = Path(__file__).resolve().parents[2]
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(repo)],
                   check=True, timeout=600, capture_output=True)
    wheel = next(wheels.glob("gim_plugins-*.whl"))
    import zipfile

    assert "gim_plugins.pth" in zipfile.ZipFile(wheel).namelist()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   timeout=300, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("GIM_PLUGINS_NO_HOOKS", "PYTHONHOME")}
    env["PYTHONPATH"] = str(standin)  # stand-in hloc; gim_plugins itself comes from the wheel (no torch needed)
    proc = subprocess.run([python, "-m", "hloc.match_dense", "--conf", "gim_dkm"], capture_output=True, text=True,
                          env=env, cwd=standin, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = confs_line(proc.stdout)
    assert {"builtin", "gim_dkm", "gim_loftr", "plugin_dense"} <= set(names)
    assert "OUTPUT=matches-gim_dkm" in proc.stdout
    where = subprocess.run([python, "-c", "import gim_plugins; print(gim_plugins.__file__)"], capture_output=True,
                           text=True, env=env, check=True).stdout
    assert where.startswith(str(venv))
    subprocess.run([python, "-m", "pip", "uninstall", "-q", "-y", "gim-plugins"], check=True, timeout=120)
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    assert not (site / "gim_plugins.pth").exists()
    after = subprocess.run([python, "-c", "print('ok')"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert after.stdout.strip() == "ok" and after.stderr == ""


def test_smoke_real_kornia_feature_is_hooked_and_unchanged() -> None:
    """The real kornia.feature (imported by the core's matchers) gets the hook and keeps all its own names."""
    kf = pytest.importorskip("kornia.feature")
    from gim_plugins import _bootstrap

    if not _bootstrap.installed():
        pytest.skip("the hooks are not active in this interpreter")
    assert getattr(kf, "__gim_plugins_group__", None) == "kornia.feature"
    assert kf.LoFTR.__module__.startswith("kornia.")
    assert set(kf.__all__) <= set(dir(kf))
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchMatcher'"):
        kf.NoSuchMatcher
