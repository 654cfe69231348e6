"""Helpers the tests share, imported as ``from tests.support import <module>``.

- :mod:`~tests.support.ascii_task`: a task the tiny model learns in a few RL steps (RL fronts).
- :mod:`~tests.support.answer_forms`: GSM8K / MATH-500 answers rewritten into each answer form.
- :mod:`~tests.support.badplugins`: objective plugins that break their contract on purpose,
  loaded by spec (``tests.support.badplugins.objectives:Raises``).
- :mod:`~tests.support.corpus`: the pieces every case of the bad-input corpus uses.
- :mod:`~tests.support.dpo_testkit`: synthetic preference pairs and tiny models for DPO trainers.
- :mod:`~tests.support.kill_checkpoints`: the driver process of the checkpoint SIGKILL test.
- :mod:`~tests.support.rl_bandit`: bandits with a known KL-regularized optimum (PPO, GRPO).

A child process that imports one of them needs the repository root on ``PYTHONPATH`` (the
tests that start one set it); the driver scripts run by path.
"""
