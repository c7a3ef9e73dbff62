"""Core library of the document question-answering service. Knows nothing of HTTP."""

__version__ = "0.1.0"
