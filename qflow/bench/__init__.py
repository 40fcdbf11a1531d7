"""Benchmarks that print numbers (speed targets live here, not in tests)."""
