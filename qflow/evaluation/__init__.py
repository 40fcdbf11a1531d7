"""Policy evaluation in OGBench single-task environments."""
