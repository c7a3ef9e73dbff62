"""Benchmarks and evaluation sets (`rag bench ...`): measured speed, memory and answers on this machine.

Kept outside the `rag` package on purpose: nothing here runs in the service, and the service never
imports it; it drives the service through `rag.service.runtime.Runtime` like any other caller.
`eval/` holds the question sets (Debian FAQ, factoid, prompt injection) and their metrics.
"""
