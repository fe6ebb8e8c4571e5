"""Fixtures giving other tests real trained, registered model pairs (owned by the training part)."""
