from rag.service.answering import AskRequest, QuestionService  # noqa: F401  TEMPORARY: removed once rag/bench imports rag.service
