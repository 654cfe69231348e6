"""Moved to :mod:`tests.support.rl_bandit`. Kept only while test_grpo.py and
test_tradeoff_fields.py still ``import rl_bandit``; delete it when they import it from there."""

from tests.support.rl_bandit import *  # noqa: F403
