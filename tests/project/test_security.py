"""The promises of docs/SECURITY.md, checked against the code.

- no unpickling: no pickle-family import, every ``torch.load`` has ``weights_only=True``, no
  ``weights_only=False``, no ``numpy.load(allow_pickle=True)``;
- YAML is read with the safe loader only (a ``!!python/...`` tag is a ConfigError and runs
  nothing);
- ``trust_remote_code`` defaults to False everywhere and is never hard-coded True;
- objectives are imported only from entry points or a ``package.module:Class`` the user wrote;
  a plain name never imports a module.

The source checks parse the code (``ast``), so strings and comments cannot fool them.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from moalign.config import load_yaml, parse_overrides
from moalign.errors import ConfigError, ObjectiveError, UnknownObjectiveError
from moalign.objective import load_objective

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for d in ("moalign", "objectives", "scripts", "benchmarks", "examples")
                 for p in (ROOT / d).rglob("*.py"))
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal",
                  "joblib"}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load",
               "full_load_all"}
UNSAFE_YAML_LOADERS = {"Loader", "UnsafeLoader", "FullLoader"}


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    parts.append(node.id if isinstance(node, ast.Name) else "<expr>")  # (...).eval() is a method
    return ".".join(reversed(parts))


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else kw.value
    return None


def violations(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, problem)`` for every unsafe construct in a parsed module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in PICKLE_MODULES:
                    found.append((node.lineno, f"imports {name}"))
        elif isinstance(node, ast.Call):
            fn = _dotted(node.func)
            if fn in ("eval", "exec"):
                found.append((node.lineno, f"calls {fn}()"))
            if fn.endswith("torch.load") or fn == "torch_load":
                if _keyword(node, "weights_only") is not True:
                    found.append((node.lineno, "torch.load without weights_only=True"))
            if fn.split(".")[0] == "yaml" and fn.split(".")[-1] in UNSAFE_YAML:
                found.append((node.lineno, f"calls {fn}"))
            loader = _keyword(node, "Loader")
            if isinstance(loader, ast.AST) and _dotted(loader).split(".")[-1] in UNSAFE_YAML_LOADERS:
                found.append((node.lineno, f"YAML Loader={_dotted(loader)}"))
            if _keyword(node, "weights_only") is False:
                found.append((node.lineno, "weights_only=False"))
            if _keyword(node, "trust_remote_code") is True:
                found.append((node.lineno, "trust_remote_code=True"))
            if fn.split(".")[-1] == "load" and fn.split(".")[0] in ("np", "numpy") \
                    and _keyword(node, "allow_pickle") is True:
                found.append((node.lineno, "numpy.load(allow_pickle=True)"))
            if fn.split(".")[-1] == "read_pickle":
                found.append((node.lineno, f"calls {fn}"))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            for arg, default in pairs:
                if arg.arg == "trust_remote_code" and not (
                        isinstance(default, ast.Constant) and default.value is False):
                    found.append((node.lineno, f"{node.name}(trust_remote_code=...) does not "
                                               "default to False"))
    return found


def test_the_scanner_catches_each_unsafe_construct():
    bad = """
import pickle
from dill import loads
import torch, yaml
torch.load("x.pt")
torch.load("x.pt", weights_only=False)
yaml.load(text, Loader=yaml.Loader)
yaml.unsafe_load(text)
yaml.safe_load(text, Loader=yaml.FullLoader)
AutoModel.from_pretrained("x", trust_remote_code=True)
np.load("a.npy", allow_pickle=True)
eval("1 + 1")
def load(path, trust_remote_code=True): ...
def load2(path, *, trust_remote_code=None): ...
"""
    problems = [p for _, p in violations(ast.parse(bad))]
    for words in ("imports pickle", "imports dill", "torch.load without weights_only=True",
                  "weights_only=False", "calls yaml.load", "YAML Loader=yaml.Loader",
                  "calls yaml.unsafe_load", "YAML Loader=yaml.FullLoader",
                  "trust_remote_code=True", "numpy.load(allow_pickle=True)", "calls eval()",
                  "load(trust_remote_code=...)", "load2(trust_remote_code=...)"):
        assert any(words in p for p in problems), (words, problems)
    good = """
import torch, yaml
torch.load("x.pt", map_location="cpu", weights_only=True)
yaml.safe_load(text)
model.eval()
load(x)[0].eval()
AutoModel.from_pretrained("x", trust_remote_code=trust_remote_code)
def load(path, trust_remote_code=False): ...
text = "torch.load(x) pickle yaml.load"
"""
    assert violations(ast.parse(good)) == []


def test_the_project_has_no_unsafe_loading():
    assert len(SOURCES) > 30
    problems = []
    for path in SOURCES:
        for line, problem in violations(ast.parse(path.read_text(encoding="utf-8"))):
            problems.append(f"{path.relative_to(ROOT)}:{line}: {problem}")
    assert problems == []


def test_yaml_python_tags_are_refused_and_run_nothing(tmp_path):
    marker = tmp_path / "pwned"
    payloads = [
        f'model: !!python/object/apply:os.system ["touch {marker}"]',
        "model: !!python/name:os.system",
        f'model: !!python/object/new:pathlib.Path ["{marker}"]',
    ]
    for i, text in enumerate(payloads):
        path = tmp_path / f"config{i}.yaml"
        path.write_text(text + "\n")
        with pytest.raises(ConfigError, match="cannot parse YAML") as info:
            load_yaml(path)
        assert str(path) in str(info.value)
    assert not marker.exists()


def test_override_values_are_parsed_safely(tmp_path):
    marker = tmp_path / "pwned"
    overrides = parse_overrides(["--model", f'!!python/object/apply:os.system ["touch {marker}"]',
                                 "--beta", "0.1"])
    assert overrides["beta"] == 0.1
    assert isinstance(overrides["model"], str)  # kept as text, never constructed
    assert not marker.exists()


def test_objective_names_never_import_modules():
    for name in ("this", "antigravity"):  # importing either has visible side effects
        was_loaded = name in sys.modules
        with pytest.raises(UnknownObjectiveError):
            load_objective(name)
        assert (name in sys.modules) == was_loaded
    with pytest.raises(UnknownObjectiveError):
        load_objective({"name": "this"})


def test_module_class_specs_must_name_an_objective_class():
    with pytest.raises(ObjectiveError, match="not an Objective subclass"):
        load_objective("os.path:join")
    with pytest.raises(UnknownObjectiveError, match="cannot import"):
        load_objective("moalign.no_such_module:Thing")
