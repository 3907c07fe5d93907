"""The installed lmladder's version; ``pyproject.toml`` is its one source."""

from importlib import metadata

__version__ = metadata.version("lmladder")
