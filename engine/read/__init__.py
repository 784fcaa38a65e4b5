"""Reading input: files and their shapes, validation into records (bad rows become rejects), the seed plan."""
