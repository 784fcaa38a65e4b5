"""Input readers and output sinks."""
