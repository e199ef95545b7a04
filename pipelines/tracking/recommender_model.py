"""The model file MLflow logs for a recommender (models-from-code).

MLflow stores this source file instead of a pickled Python object: loading a registered
version executes it, which builds :class:`~pipelines.tracking.pyfunc.RecommenderPyfunc` from
the ``pipelines`` package shipped beside it (``code_paths``); ``load_context`` then reads the
bundle from the model's artifacts. Nothing but this package's code runs at load time.
"""

import mlflow

from pipelines.tracking.pyfunc import RecommenderPyfunc

mlflow.models.set_model(RecommenderPyfunc())
