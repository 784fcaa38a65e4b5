"""Writing a run's outputs: the round sinks (data/, exports, rejects/) and the training-format exporters."""
