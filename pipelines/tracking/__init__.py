"""MLflow: tracking runs, plots, pyfunc packaging, registry and promotion.

Every module here imports mlflow lazily inside functions, so importing the package is cheap.
"""
