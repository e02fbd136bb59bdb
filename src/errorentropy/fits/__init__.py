"""Scaling laws from a sweep's cells: power-law fits with bootstrap intervals, extrapolation and
RBP_k rows, and the versioned fits.json record they are written to."""
