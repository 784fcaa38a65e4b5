"""What a row is: its columns, ids, lineage and status, and the seeds of its sampling."""
