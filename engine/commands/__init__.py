"""The `python -m engine.<command>` tools around runs: analyze, pairwise, compare, balance, export, bench, sweep."""
