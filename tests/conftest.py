"""Fixtures every test shares.

Tests are grouped like the packages of ``moalign/`` (``tests/<package>/``); ``tests/project/``
holds whole-project checks (architecture, security, scripts), ``tests/bad_inputs/`` the corpus of
bad inputs tried through every entry point, and ``tests/support/`` the helpers tests share
(``from tests.support import rl_bandit``). ``python -m pytest -m "not slow"`` is the fast loop;
docs/CONTRIBUTING.md says what is marked ``slow``.
"""

from __future__ import annotations

import os

import pytest

# `precision: auto` must not make a result depend on which CPU runs the suite: unless told
# otherwise, every test (and every process a test starts) sees a CPU without bfloat16 units, so
# auto means float32. `MOALIGN_CPU_BF16=1 python -m pytest` runs the suite with auto meaning
# bfloat16 instead (emulated, slower, on a CPU without the units). Tests of the detection itself
# stand in for the flags with monkeypatch.
os.environ.setdefault("MOALIGN_CPU_BF16", "0")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run far faster on one thread, and the CPU is shared: every test runs with
    one torch thread (a test that needs more sets them itself)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
