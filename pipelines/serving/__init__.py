"""Serving: a trained model bundled with its id encodings, recommending by raw ids.

- :mod:`~pipelines.serving.bundle`: the bundle (model + id encodings + training items) and cold start;
- :mod:`~pipelines.serving.registry`: the version under an alias and its bundle, downloaded once;
- :mod:`~pipelines.serving.scorer` and :mod:`~pipelines.serving.explain`: one user's top-k from
  precomputed arrays, with the history item that explains each recommendation;
- :mod:`~pipelines.serving.batch` and :mod:`~pipelines.serving.tables`: every user's top-k in SQL,
  switched atomically per version;
- :mod:`~pipelines.serving.app`, :mod:`~pipelines.serving.follow`, :mod:`~pipelines.serving.recorder`,
  :mod:`~pipelines.serving.schemas`: the online API (``recsys serve``) that follows ``@champion``.
"""
