"""The features step: from clean interactions to aligned train/test matrices.

- :mod:`~pipelines.features.config`     ``FeatureConfig``, the step's one config object
- :mod:`~pipelines.features.encoding`   contiguous user/item indices (Dask)
- :mod:`~pipelines.features.splits`     stratified, random and temporal train/test splits
- :mod:`~pipelines.features.matrices`   users x items CSR matrices
- :mod:`~pipelines.features.weighting`  confidence weighting (linear, log, BM25)
- :mod:`~pipelines.features.content`    item content features (genres, title, tags)
- :mod:`~pipelines.features.store`      ``FeatureSet``, ``load_feature_set`` (what training reads)
- :mod:`~pipelines.features.run`        ``run_features``: the step's entry point

Nothing is imported here so that ``import pipelines.features`` stays cheap (no Dask).
"""
