"""Objective plugins that misbehave on purpose, imported by spec (``badplugins.objectives:X``)."""
