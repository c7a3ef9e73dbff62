"""Evaluation data and metrics for `rag bench qa`: the Debian FAQ as question/answer sets, gold spans, scores."""
