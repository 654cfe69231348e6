"""Lazy public APIs: a package names what it exports and where it lives, and the defining
module is imported on first attribute access (so ``import moalign`` stays fast and heavy
libraries such as torch, transformers and TRL load only when a step needs them)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def attach(package: str, exports: Mapping[str, str], modules: Mapping[str, str] | None = None,
           ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public ``name`` is defined in submodule
    ``exports[name]`` (relative to ``package``, dotted for a deeper one; a name equal to its
    submodule exports the submodule itself), and whose ``modules[name]`` is the submodule
    exported under ``name`` (an alias such as ``front`` for ``fronts``). The value is stored
    in the package on first access."""
    modules = dict(modules or {})

    def __getattr__(name: str) -> Any:
        if name in modules:
            value = importlib.import_module(f"{package}.{modules[name]}")
        elif name in exports:
            module = importlib.import_module(f"{package}.{exports[name]}")
            value = module if exports[name] == name else getattr(module, name)
        else:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        importlib.import_module(package).__dict__[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(exports) | set(modules))

    return __getattr__, __dir__


def exports_of(modules: Mapping[str, list[str]]) -> dict[str, str]:
    """``{name: submodule}`` from ``{submodule: [names]}``."""
    return {name: module for module, names in modules.items() for name in names}
