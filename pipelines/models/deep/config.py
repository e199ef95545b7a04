"""The deep models' configs, in one torch-free module: the shared loop's, then each model's.

Pure pydantic (no torch), so configs validate wherever the registry is used, and the
``*_module`` files (torch) import their config from here rather than from the wrapper that
imports them. Each model's config subclasses :class:`DeepModelConfig` and re-declares a field
to change its default.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from pipelines.models.base import ModelConfig

#: Share of Mult-VAE's epochs over which its KL weight anneals when ``anneal_steps`` is None.
ANNEAL_SHARE = 0.4
FULL_SOFTMAX_MAX_ITEMS = 5_000  # the sequence model's "auto" loss samples above this catalog size
_Width = Annotated[int, Field(ge=1, le=65_536)]


class DeepModelConfig(ModelConfig):
    """Training-loop hyperparameters, then the runtime options (how to compute, not what)."""

    epochs: int = Field(50, ge=1, le=10_000)
    """Most passes over the training data; early stopping may end sooner."""
    batch_size: int = Field(512, ge=1, le=1_000_000)
    """Examples per optimizer step (interactions for NCF, users for Mult-VAE)."""
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0, allow_inf_nan=False)
    """Adam's step size. Adam moves each weight by about this much per step whatever the
    gradient's scale, so values above 1 only diverge and are refused."""
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    """Adam's L2 weight decay on the dense weights (NCF's embedding tables are regularized by
    its ``l2_regularization`` instead)."""
    patience: int = Field(5, ge=0, le=1_000)
    """Epochs without a better validation nDCG@10 before training stops (0: never early); the
    best epoch's weights are the final model."""
    validation_fraction: float = Field(0.1, ge=0.0, le=0.5, allow_inf_nan=False)
    """When ``fit`` gets no ``validation`` matrix: share of each user's training items held out
    (seeded) to measure nDCG@10 each epoch for early stopping. The held-out items are not
    trained on. 0 disables early stopping: every epoch runs and the last one is kept."""
    validation_users: int = Field(5_000, ge=1, le=10_000_000)
    """Most users scored for the per-epoch validation metric (a seeded sample beyond that),
    which bounds the cost of evaluating each epoch on large data."""

    # -- runtime options: where and how to compute, not what ---------------------------------
    device: str | None = Field(None, pattern=r"^(?i:cpu|gpu|auto|cuda(:\d+)?)$")
    """"cpu", "gpu"/"cuda", "cuda:N" or "auto"; None reads ``$RECSYS_DEVICE`` (else the CPU).
    A GPU request without CUDA falls back to the CPU with a warning. Runs are bit-for-bit
    reproducible on the CPU; CUDA kernels may differ in the last bits."""
    num_threads: int = Field(0, ge=0, le=1_024)
    """CPU threads torch may use during fit; 0: the cores this process may run on that the
    1-minute load average leaves idle, at least one (torch's threads wait for each other at
    every operation: on busy cores a small model trained 20 times slower on two threads than
    on one). Results depend on it only through floating-point summation order."""
    checkpoint_dir: str | None = None
    """Folder for ``<model>-best.pt`` (config, epoch, best metric, state_dict), rewritten at
    each new best epoch; None keeps the best weights in memory only."""

    runtime_options: ClassVar[frozenset[str]] = frozenset({"device", "num_threads", "checkpoint_dir"})


class NcfConfig(DeepModelConfig):
    """Hyperparameters of :class:`NcfRecommender` (then the shared loop's, then runtime options).
    The defaults' measured quality: ``benchmarks/results/quality.json``.
    """

    embedding_dim: int = Field(64, ge=1, le=4_096)
    """Width of the user, history and item embeddings (and of the towers' input)."""
    user_input: Literal["id", "history", "id+history"] = "history"
    """What feeds the user tower: ``id``, a learnt embedding per user; ``history``, the mean of
    learnt history embeddings of the user's items (shared by all users, so a new user folds in
    exactly like a known one); ``id+history``, their sum."""
    tower_layers: tuple[Annotated[int, Field(ge=1, le=8_192)], ...] = Field((), max_length=8)
    """Output widths of each tower's linear layers (ReLU between them); empty: no towers, the
    embeddings are compared directly."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0, allow_inf_nan=False)
    """Dropout between tower layers (unused without at least two layers)."""
    item_bias: bool = True
    """Learn a per-item bias added to every score, started at the log item frequency."""
    loss: Literal["bpr", "bce", "softmax"] = "softmax"
    """``bpr``: -log sigmoid(positive - negative), averaged over the negatives; ``bce``: logistic
    loss of the positive as 1 and of the negatives (averaged) as 0; ``softmax``: cross-entropy of
    the positive against negatives shared by the whole batch (a sampled softmax)."""
    n_negatives: int = Field(1_000, ge=1, le=100_000)
    """Negative items drawn uniformly: per interaction and epoch for ``bpr`` and ``bce`` (a few
    suffice), per batch and shared by its examples for ``softmax`` (hundreds to thousands; at
    least the catalogue size means the exact softmax over every item)."""
    l2_regularization: float = Field(0.1, ge=0.0, le=100.0, allow_inf_nan=False)
    """Penalty on the squared norms of the user inputs and item embeddings a batch uses."""
    init_std: float = Field(0.1, gt=0.0, le=10.0, allow_inf_nan=False)
    """Standard deviation of the normal initial embeddings."""
    fold_in_regularization: float = Field(1.0, gt=0.0, le=1e6, allow_inf_nan=False)
    """Ridge penalty when folding a new user in with ``user_input="id"`` (see
    :meth:`NcfRecommender.score_new_users`)."""

    epochs: int = Field(30, ge=1, le=10_000)
    batch_size: int = Field(1_024, ge=1, le=1_000_000)
    learning_rate: float = Field(5e-3, gt=0.0, le=1.0, allow_inf_nan=False)


class MultVaeConfig(DeepModelConfig):
    """Hyperparameters of :class:`MultVaeRecommender` (then the shared loop's, then runtime options).
    The defaults' measured quality: ``benchmarks/results/quality.json``.
    """

    encoder_dims: tuple[_Width, ...] = Field((), max_length=8)
    """Hidden widths of the encoder, from the input side, tanh after each (the paper: (600,));
    empty: the input row maps linearly to the latent's mean and log-variance."""
    latent_dim: int = Field(200, ge=1, le=65_536)
    """Width of the Gaussian latent."""
    decoder_dims: tuple[_Width, ...] | None = Field(None, max_length=8)
    """Hidden widths of the decoder, from the latent side; None mirrors ``encoder_dims``."""
    dropout: float = Field(0.5, ge=0.0, lt=1.0, allow_inf_nan=False)
    """Dropout on the normalised input row during training (the denoising that makes it work)."""
    beta_cap: float = Field(0.2, ge=0.0, le=10.0, allow_inf_nan=False)
    """Largest weight of the KL term (the paper's anneal cap)."""
    anneal_steps: int | None = Field(None, ge=0, le=100_000_000)
    """Optimizer steps over which the KL weight grows linearly from 0 to ``beta_cap`` (0:
    ``beta_cap`` from the first step). None: the steps of the first ``ANNEAL_SHARE`` of
    ``epochs``, so the schedule spans the same share of training whatever the number of users
    (a count of steps means many epochs on small data and a fraction of one on large data)."""

    epochs: int = Field(80, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=1_000_000)
    learning_rate: float = Field(2e-3, gt=0.0, le=1.0, allow_inf_nan=False)
    patience: int = Field(10, ge=1, le=1_000)

    def decoder_widths(self) -> tuple[int, ...]:
        """The decoder's hidden widths (``decoder_dims``, or the encoder's reversed)."""
        return tuple(reversed(self.encoder_dims)) if self.decoder_dims is None else self.decoder_dims

    def beta(self, step: int, steps_per_epoch: int = 1) -> float:
        """KL weight at optimizer step ``step`` (0-based), with ``steps_per_epoch`` for the default schedule."""
        anneal = self.anneal_steps
        if anneal is None:
            anneal = max(1, round(ANNEAL_SHARE * self.epochs * steps_per_epoch))
        if anneal == 0:
            return self.beta_cap
        return min(self.beta_cap, self.beta_cap * step / anneal)


class SequenceConfig(DeepModelConfig):
    """Hyperparameters of :class:`SequenceRecommender`, then its runtime options.
    The defaults' measured quality: ``benchmarks/results/quality.json``.
    """

    embedding_dim: int = Field(64, ge=2, le=2048)
    """Dimensions of the item embedding fed to the GRU."""
    hidden_size: int = Field(128, ge=2, le=4096)
    """GRU state size (also the size of the output layer's item vectors)."""
    num_layers: int = Field(1, ge=1, le=4)
    """Stacked GRU layers."""
    dropout: float = Field(0.1, ge=0.0, lt=1.0, allow_inf_nan=False)
    """Dropout on the embeddings and the GRU outputs (and between layers)."""
    max_length: int = Field(50, ge=2, le=10_000)
    """Next-item transitions per training window."""
    history_length: int = Field(2000, ge=1, le=100_000)
    """The most recent items of a user the GRU reads to score them."""
    scoring: Literal["mean", "last"] = "mean"
    """``last``: the next-item distribution after the user's last item (GRU4Rec's own score,
    best when the next item is what is asked: nDCG@10 0.050 against 0.019 for popularity on
    MovieLens' leave-last-one-out split, but 0.067 on the random per-user split). ``mean``: the
    next-item distributions after each item of the history, averaged: which items fit anywhere
    in the user's history (0.264 on the random split, 0.027 on leave-last-one-out). Choose
    ``last`` for next-item serving and temporal evaluation."""
    loss: Literal["auto", "full", "sampled"] = "auto"
    """``full`` softmax over every item, ``sampled`` softmax over the target and
    ``n_negatives`` shared negatives, ``auto``: full up to 5,000 items."""
    n_negatives: int = Field(512, ge=1, le=100_000)
    """Negatives shared by a batch in sampled softmax."""
    batch_size: int = Field(32, ge=1, le=65_536)
    epochs: int = Field(8, ge=1, le=1000)
    learning_rate: float = Field(3e-3, gt=0.0, le=1.0, allow_inf_nan=False)
    patience: int = Field(3, ge=0, le=1000)
    validation_fraction: float = Field(0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    """Without ``validation`` data: the share of users (with 3+ items) whose latest item is
    held out for early stopping (0: none, train every epoch; a small share is a noisy stop).
    The train step passes the features' validation split when it has one."""

    num_threads: int = Field(1, ge=0, le=1024)
    """CPU threads torch may use while fitting and scoring (0: the idle cores). One is the
    default: the GRU's small sequential steps gain nothing from more, and on a busy machine
    their synchronisation made each epoch several times slower."""
