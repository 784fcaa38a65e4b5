"""Measurements that are not a stage: quantiles, output-space histograms, the machine's facts."""
