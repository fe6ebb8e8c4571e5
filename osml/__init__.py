"""osml core: what training, serving and the worker share (features schema, registry conventions, CLI)."""
