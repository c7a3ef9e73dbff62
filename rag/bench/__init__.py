"""Benchmarks: measured speed, memory and answers of the models on this machine."""
