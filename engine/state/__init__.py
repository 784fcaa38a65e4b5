"""A run's state on disk: the folder layout, storage (paths or URIs), manifest, ledger and segments."""
