"""Training on Dask: the training frame of a partitioned export and the `--engine dask` pipeline."""
