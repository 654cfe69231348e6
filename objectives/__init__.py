"""Built-in moalign objectives.

Each module defines one :class:`moalign.Objective` and is registered through the
``moalign.objectives`` entry-point group in ``pyproject.toml``, the same way a third-party
plugin package registers its own.
"""
