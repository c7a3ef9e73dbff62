"""Evaluation data and metrics for the benches: the Debian FAQ as question/answer sets with gold spans,
the factoid set, the prompt-injection corpus, scores, and the LlamaIndex baseline."""
