"""Built-in moalign objectives, installed as the package ``moalign_objectives`` (this folder
keeps its name in the repository; ``pyproject.toml`` maps it with ``package-dir``, so the global
name ``objectives`` stays free for other projects).

Each module defines one :class:`moalign.Objective` and is registered through the
``moalign.objectives`` entry-point group in ``pyproject.toml``, the same way a third-party
plugin package registers its own.
"""
