"""Data sources, the canonical orders export and the synthetic generator."""
