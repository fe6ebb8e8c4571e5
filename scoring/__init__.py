"""Batch scoring: every open order (or every order) scored with the production pair, on Dask."""
