"""Objective plugins that misbehave on purpose, imported by spec (``tests.support.badplugins.objectives:X``)."""
