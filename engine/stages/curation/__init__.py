"""Stages of recipe=curate (an existing data set, not evolved): the given answers checked and kept aside, and the
deduplication applied row by row."""
