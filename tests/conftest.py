"""Fixtures every test shares.

Tests are grouped like the packages of ``moalign/`` (``tests/<package>/``); ``tests/project/``
holds whole-project checks (architecture, security, scripts) and ``tests/bad_inputs/`` the
corpus of bad inputs tried through every entry point.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run far faster on one thread, and the CPU is shared: every test runs with
    one torch thread (a test that needs more sets them itself)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
