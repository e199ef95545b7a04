"""Recommender platform: the logic behind the Airflow DAGs.

Importing this package is cheap on purpose: no torch, cupy, dask or mlflow at import
time. Each subpackage is one concern:

- ``data``        sources (synthetic, files, MovieLens, SQL) and immutable snapshots
- ``cleaning``    schema checks, quarantine with reasons, dedup, k-core (Dask)
- ``features``    id encodings, splits, confidence weighting, CSR, item content (Dask)
- ``models``      one interface, one module per model family
- ``evaluation``  ranking metrics shared by training, tests and benchmarks
- ``tracking``    MLflow runs, plots, pyfunc packaging, registry and promotion
- ``serving``     loading a trained bundle and recommending by raw ids
- ``training``    the train step: fit, evaluate, log
- ``compute``     array backend (NumPy/CuPy) and the Dask client
"""

__version__ = "0.1.0"
