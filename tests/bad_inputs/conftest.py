"""Fixtures of the bad-input corpus; its shared helpers are in :mod:`tests.support.corpus`.

Most bad inputs must be reported before any model loads: :func:`no_model_load` replaces the
model loaders with one that fails the test, so a case that loads a model first is caught.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The libraries' log handlers keep the stderr they see when first configured: set them up now,
# not inside a test whose captured stderr is closed when it ends.
import datasets  # noqa: E402, F401
import transformers.utils.logging  # noqa: E402, F401

from tests.support.corpus import CliResult, ModelLoaded  # noqa: E402


@pytest.fixture
def cli(capsys) -> Callable[..., CliResult]:
    """Run ``moalign.cli.main(argv)`` in-process; argparse's own errors (``SystemExit``) count
    as an exit code too."""
    from moalign.cli import main

    def run(*argv: Any) -> CliResult:
        capsys.readouterr()
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(rc, captured.out, captured.err)

    return run


@pytest.fixture
def no_model_load(monkeypatch) -> None:
    """Make every model loader fail the test (``ModelLoaded``)."""
    import moalign.models
    import moalign.models.loading
    import moalign.models.specs

    def forbidden(*args: Any, **kwargs: Any):
        raise ModelLoaded(f"a model was loaded ({args!r}) before the bad input was reported")

    monkeypatch.setattr(moalign.models.specs, "load_model_spec", forbidden)
    for module in (moalign.models, moalign.models.loading, moalign.models.specs):
        monkeypatch.setattr(module, "load_policy", forbidden)
