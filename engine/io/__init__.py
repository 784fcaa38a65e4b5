"""Input readers with validation (bad rows become rejects) and the round sinks."""
