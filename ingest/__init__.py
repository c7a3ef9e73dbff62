"""Parsing, normalisation, chunking and the ingestion pipeline."""
