from rag.service.runtime import *  # noqa: F401,F403  TEMPORARY: removed once rag/bench imports rag.service
from rag.service.runtime import Runtime  # noqa: F401
