"""Reproducibility benchmark suite for published training recipes."""
