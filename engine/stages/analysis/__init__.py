"""Stages that measure a finished run's rows: judges, diversity, reward, trajectory keywords."""
