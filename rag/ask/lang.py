"""Temporary re-export: language rules live in `rag.text.lang`; import from there. Removed once no module imports this."""

from rag.text.lang import *  # noqa: F401,F403
from rag.text.lang import base, detect_language  # noqa: F401  (used by rag.service.searching)
