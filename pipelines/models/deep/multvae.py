"""Mult-VAE: a variational autoencoder with a multinomial likelihood (Liang et al. 2018).

Each user is their interaction row; the encoder maps the (L2-normalised, dropped-out) row to
a Gaussian latent, the decoder maps the latent to a softmax over every item. The KL term is
annealed linearly from 0 to ``beta_cap`` over ``anneal_steps`` optimizer steps (the paper's
"partially regularized" VAE). The network is :mod:`pipelines.models.deep.multvae_module`.

Scores are the decoder's logits for the posterior mean of the user's full training row, so
folding a new user in is the same computation on their seed row. Fitted models score with
NumPy from the exported weights: serving needs no torch.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from pipelines import seeding
from pipelines.models.base import IterationCallback, ModelConfig
from pipelines.models.deep.base import TorchRecommender
from pipelines.models.deep.config import MultVaeConfig
from pipelines.models.validation import split_for_early_stopping
from pipelines.models.warm_start import WarmStart

#: Users encoded at once by the NumPy forward pass (bounds its dense temporaries).
_ENCODE_BLOCK = 4_096


class MultVaeRecommender(TorchRecommender):
    """Mult-VAE collaborative filtering; scores are the decoder's logits for the user's latent.

    After :meth:`fit`: ``user_latent_`` (n_users, latent_dim: the posterior mean of each user's
    full training row), ``module_state_`` (the network's state_dict as NumPy arrays),
    ``item_popularity_`` (unknown-user fallback), ``training_loss_`` and ``validation_ndcg_``
    (one value per epoch run) and ``best_epoch_`` (the 0-based epoch kept).
    """

    name: ClassVar[str] = "multvae"
    summary: ClassVar[str] = "Mult-VAE (variational autoencoder, multinomial likelihood, PyTorch); strongest neural model here, folds new users in"
    config_class: ClassVar[type[ModelConfig]] = MultVaeConfig
    config: MultVaeConfig

    warm_start_fields: ClassVar[tuple[str, ...]] = ("encoder_dims", "latent_dim", "decoder_dims")

    user_latent_: np.ndarray | None = None

    def _fit(
        self, train: sp.csr_matrix, *, validation: sp.csr_matrix | None, callback: IterationCallback | None,
        warm_start: WarmStart | None = None, **unused: Any,
    ) -> None:
        """Train on the interactions of ``train``. ``validation`` drives early stopping; without it
        ``validation_fraction`` of each user's items is held out for that (the final user latents
        still encode every training item)."""
        import torch

        from pipelines.models.deep import training
        from pipelines.models.deep.multvae_module import MultVaeModule, sparse_rows

        cfg = self.config
        matrix = train
        n_items = matrix.shape[1]
        split_rng, order_rng = seeding.rng(cfg.seed).spawn(2)
        fit_matrix, validation_set = split_for_early_stopping(
            matrix, validation, cfg.validation_fraction, cfg.validation_users, split_rng,
            eligible=None if warm_start is None else warm_start.unseen(matrix),
        )
        active_users = np.flatnonzero(np.diff(fit_matrix.indptr) > 0)  # empty rows teach nothing
        steps_per_epoch = -(-len(active_users) // cfg.batch_size)
        step = 0

        with training.torch_session(cfg) as device:
            module = MultVaeModule(cfg, n_items, item_counts=np.diff(fit_matrix.tocsc().indptr)).to(device)
            self._start_from(module, warm_start)
            optimizer = training.adam(module.parameters(), cfg)

            def rows_of(users: np.ndarray) -> torch.Tensor:
                return sparse_rows(fit_matrix[users], device)

            def run_epoch(epoch: int) -> float:
                nonlocal step
                total = 0.0
                order = order_rng.permutation(active_users)
                for start in range(0, len(order), cfg.batch_size):
                    users = order[start : start + cfg.batch_size]
                    loss = module(rows_of(users), cfg.beta(step, steps_per_epoch))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    total += float(loss.detach()) * len(users)
                return total / max(len(order), 1)

            def score_users(users: np.ndarray) -> torch.Tensor:
                return module.score(rows_of(users))

            outcome = training.train_epochs(
                module, run_epoch, score_users, validation_set, cfg,
                model_name=self.name, model_args={"n_items": n_items}, callback=callback,
            )
            self._keep(outcome, module)
        self.user_latent_ = self._encode(matrix)  # every training item, the held-out ones too

    def _warm_rows(self, names: list[str]) -> dict[str, tuple[str, int, int]]:
        """The input layer's item columns, the output layer's item rows."""
        last = max(int(name.split(".")[1]) for name in names if name.startswith("decoder."))
        return {"encoder.0.weight": ("item", 1, 0), f"decoder.{last}.weight": ("item", 0, 0),
                f"decoder.{last}.bias": ("item", 0, 0)}

    # -- NumPy inference from the exported weights ----------------------------------------------
    def _layers(self, part: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """(weight, bias) of each linear layer of ``part`` ("encoder" or "decoder"), in order."""
        layers = []
        while f"{part}.{len(layers)}.weight" in self.module_state_:
            index = len(layers)
            layers.append((self.module_state_[f"{part}.{index}.weight"], self.module_state_[f"{part}.{index}.bias"]))
        return layers

    def _encode(self, rows: sp.csr_matrix) -> np.ndarray:
        """Posterior means (n, latent_dim) of binary interaction ``rows`` (as the network does in eval mode)."""
        layers = self._layers("encoder")
        out = np.empty((rows.shape[0], self.config.latent_dim), dtype=np.float32)
        for start in range(0, rows.shape[0], _ENCODE_BLOCK):
            block = sp.csr_matrix(rows[start : start + _ENCODE_BLOCK], dtype=np.float32)
            norms = np.sqrt(np.asarray(block.multiply(block).sum(axis=1), dtype=np.float32)).ravel()
            block = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ block  # F.normalize's eps
            weight, bias = layers[0]
            h = np.asarray(block @ weight.T, dtype=np.float32) + bias
            for weight, bias in layers[1:]:
                h = np.tanh(h) @ weight.T + bias
            out[start : start + len(h)] = h[:, : self.config.latent_dim]
        return out

    def _decode(self, latent: np.ndarray) -> np.ndarray:
        """Item logits (n, n_items) of latent vectors."""
        layers = self._layers("decoder")
        h = latent
        for index, (weight, bias) in enumerate(layers):
            h = h @ weight.T + bias
            if index < len(layers) - 1:
                h = np.tanh(h)
        return h.astype(np.float32, copy=False)

    def _score_block(self, user_idx: np.ndarray) -> np.ndarray:
        return self._decode(self.user_latent_[user_idx])

    def score_new_users(self, seen: sp.csr_matrix) -> np.ndarray:
        """Scores for new users from their seed items (rows of ``seen``, n_new x n_items).

        The same computation as for a training user: encode the seed row, decode the posterior
        mean. Users without a positive seed item get popularity. Raises as
        :meth:`~pipelines.models.deep.base.TorchRecommender._seed_rows` does.
        """
        self._check_fitted()
        seeds = self._seed_rows(seen)
        scores = self._decode(self._encode(seeds))
        scores[np.diff(seeds.indptr) == 0] = self._unknown_user_scores()
        return scores

    # -- persistence ----------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {"user_latent_": self.user_latent_, **self._training_state()}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.user_latent_ = state["user_latent_"]
        self._load_training_state(state)
