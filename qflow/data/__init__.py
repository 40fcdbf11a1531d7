"""Datasets: official files, OGBench's download, or regeneration by the published recipe."""
