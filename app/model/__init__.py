"""The model: its files in a directory (.cfg, .weights, .names, .data), checked, and
where that directory comes from (sources.py: a local path, s3://)."""
