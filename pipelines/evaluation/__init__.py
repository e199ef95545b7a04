"""Evaluation: ranking metrics shared by training, tests and benchmarks.

- :mod:`~pipelines.evaluation.metrics`   ``ranking_metrics``: precision, recall, nDCG, MAP,
  hit rate and coverage at k (Microsoft Recommenders conventions)
- :mod:`~pipelines.evaluation.evaluate`  ``evaluate_model`` and ``metrics_at_ks`` for any
  :class:`pipelines.models.base.Recommender`
"""
