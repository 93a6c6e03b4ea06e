"""Benchmarks: each compares baton with its peers side by side in one run."""
