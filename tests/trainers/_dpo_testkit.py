"""Moved to :mod:`tests.support.dpo_testkit`. Kept only while test_tradeoff_fields.py still
imports ``_dpo_testkit``; delete it when it imports the helpers from there."""

from tests.support.dpo_testkit import *  # noqa: F403
