"""A plugin module that fails while it is imported."""

raise RuntimeError("plugin configuration file not found")
