"""Bundled demo services for `make demo`."""
