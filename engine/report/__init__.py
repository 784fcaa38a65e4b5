"""Aggregates over finished runs (read from their output directories, streaming)."""
