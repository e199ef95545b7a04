"""Hyperparameter tuning: an Optuna study per model family, trials spread over Dask.

- ``search_space``  per-family search spaces as plain data, and how a trial samples them
- ``config``        :class:`TuningConfig`, the step's one config object
- ``validation``    carving a validation split from train, and merging it back
- ``trial``         one trial: fit on train-minus-validation, report per epoch, prune (runs on workers)
- ``study``         :func:`tune_model`: the study, its sampler and pruner, sequential or over Dask
- ``trial_runs``    each trial as a nested MLflow run
- ``run``           :func:`run_tuning`: the step's IO layer (features URI in, partition and JSON out)

Importing this package (and ``config``/``search_space``) is cheap: Optuna, Dask and MLflow are
imported inside the functions that use them.
"""
