"""The test suite of moalign, a package so that tests import their shared helpers by name
(``from tests.support import rl_bandit``) instead of through ``sys.path``.

``python -m pytest -m "not slow"`` is the fast loop; CI runs every test (see
docs/CONTRIBUTING.md).
"""
