"""Stages: callable classes with the exact map_batches contract (batch in, batch of the same rows out)."""
