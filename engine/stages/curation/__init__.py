"""Stages that curate a round's rows as a whole: deduplication."""
