"""Monitoring of the serving champion: data drift, live quality, service health, retrain decision.

- :mod:`~pipelines.monitoring.config`: :class:`MonitoringConfig` (one object for the step),
  its thresholds, the trigger form's ``param_specs`` and ``from_params``;
- :mod:`~pipelines.monitoring.drift`: the champion's training snapshot against the interactions
  that arrived since (volume, new users and items, popularity, ratings, time patterns);
- :mod:`~pipelines.monitoring.quality`: the champion scored on those interactions, and
  click-through from the served-recommendation events;
- :mod:`~pipelines.monitoring.health`: latency, errors and fallbacks from the request log;
- :mod:`~pipelines.monitoring.report`: one MLflow run per check (metrics, plots, HTML report);
- :mod:`~pipelines.monitoring.run`: :func:`monitor`, the one entry point (DAG task and CLI).

Importing this package is cheap: pandas, SciPy, MLflow and matplotlib are imported inside functions.
"""
