"""What the PyTorch families share around the network: input flags, the early-stopping record,
the weights exported to NumPy for scoring and saving. Torch-free: a fitted model serves without it."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from pipelines.models.base import Recommender
from pipelines.models.sparse_inputs import check_seen
from pipelines.models.warm_start import Axis, WarmStart

log = logging.getLogger(__name__)

_STATE_PREFIX = "module."


class TorchRecommender(Recommender):
    """A family trained by :func:`pipelines.models.deep.training.train_epochs`.

    Positive stored values are interactions (weight 1; confidence weighting changes nothing),
    ``validation`` drives early stopping. After fit: ``training_loss_`` and
    ``validation_ndcg_`` (one value per epoch run), ``best_epoch_`` (the 0-based epoch kept)
    and ``module_state_`` (the network's state_dict as NumPy arrays).
    """

    input_values: ClassVar[str] = "binary"
    uses_validation: ClassVar[bool] = True
    #: The network's tensors indexed by user or item: name -> (axis, dimension, offset of index 0).
    warm_start_rows: ClassVar[dict[str, tuple[Axis, int, int]]] = {}
    validation_ndcg_: list[float] = []  # replaced, never appended to, by each fit
    best_epoch_: int = -1
    module_state_: dict[str, np.ndarray] = {}

    def _seed_rows(self, seen: Any, dtype: Any = np.float32) -> sp.csr_matrix:
        """New users' seed items (rows of ``seen``) as binary CSR, as training read them.

        Raises TypeError for a non-sparse ``seen``, ValueError for another number of items or a
        non-finite value (as :func:`~pipelines.models.sparse_inputs.check_seen` does for every family).
        """
        rows = check_seen(seen, self.n_items, dtype)
        rows.data = (rows.data > 0).astype(dtype)
        rows.eliminate_zeros()
        return rows

    def _warm_rows(self, names: list[str]) -> dict[str, tuple[Axis, int, int]]:
        """:attr:`warm_start_rows` for a network whose state_dict has ``names``."""
        return dict(self.warm_start_rows)

    def _start_from(self, module: Any, warm_start: WarmStart | None) -> None:
        """Load ``warm_start``'s weights into the freshly initialised ``module`` (no-op without one).

        Tensors indexed by user or item (:meth:`_warm_rows`) take the shared users' and items'
        slices; every other tensor is taken whole when its shape matches and otherwise keeps its
        fresh initialisation (logged). The optimizer's state starts fresh.
        """
        if warm_start is None:
            return
        import torch

        previous = warm_start.previous.module_state_
        state = module.state_dict()  # tensors sharing the parameters' storage
        rows = self._warm_rows(list(state))
        fresh = []
        with torch.no_grad():
            for name, tensor in state.items():
                old = previous.get(name)
                if name in rows and old is not None:
                    axis, dim, offset = rows[name]
                    old = warm_start.copy_rows(tensor.detach().cpu().numpy().copy(), old, axis, dim, offset)
                if old is None or tuple(old.shape) != tuple(tensor.shape):
                    fresh.append(name)
                    continue
                tensor.copy_(torch.as_tensor(old, dtype=tensor.dtype).to(tensor.device))
        if fresh:
            log.info("%s warm start: %d tensor(s) kept their fresh initialisation: %s", self.name, len(fresh), fresh)

    def _keep(self, history: Any, module: Any) -> None:
        """Record the loop's ``history`` and export ``module``'s weights (the best epoch's)."""
        self.training_loss_ = list(history.losses)
        self.validation_ndcg_ = list(history.validation_ndcg)
        self.best_epoch_ = history.best_epoch
        self.module_state_ = {name: t.detach().cpu().numpy() for name, t in module.state_dict().items()}

    def _training_state(self) -> dict[str, np.ndarray]:
        """The record and the weights, for :meth:`_state`."""
        state = {
            "validation_ndcg_": np.asarray(self.validation_ndcg_, dtype=np.float64),
            "best_epoch_": np.asarray(self.best_epoch_, dtype=np.int64),
        }
        state.update({_STATE_PREFIX + name: array for name, array in self.module_state_.items()})
        return state

    def _load_training_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`_training_state` stored."""
        self.validation_ndcg_ = [float(v) for v in state.get("validation_ndcg_", [])]
        self.best_epoch_ = int(state.get("best_epoch_", -1))
        self.module_state_ = {k[len(_STATE_PREFIX) :]: v for k, v in state.items() if k.startswith(_STATE_PREFIX)}
