"""Compute backends: the array module (NumPy or CuPy) and the Dask client."""
