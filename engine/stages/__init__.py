"""Stages, one file each, batch -> batch, grouped by what they do: generation/, scoring/, autoif/, analysis/.

A stage is built from its own typed args (engine/recipes/spec.py), loads its models with load_backend, and never
imports ray or reads the whole Config; what is not a stage lives outside this package."""
