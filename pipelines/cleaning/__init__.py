"""Cleaning: typed columns, bad rows quarantined with a reason, dedup and k-core (Dask).

Entry point: :func:`pipelines.cleaning.run.run_cleaning`; the row rules are pure functions in
:mod:`pipelines.cleaning.rules`. Nothing heavy is imported here.
"""
