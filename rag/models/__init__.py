"""Models that ship inside packages: where their bytes are, how they are prepared, and how they load."""

from rag import offline as _offline  # noqa: F401  (must run before transformers is imported)
