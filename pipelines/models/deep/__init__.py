"""Neural recommenders trained with PyTorch: NCF (two towers) and Mult-VAE.

Layout (nanoGPT style): ``config`` holds the shared pydantic hyperparameters, ``data`` the
torch-free preparation (binarising, the seeded hold-out), ``training`` the one epoch loop
(seeding, device, threads, early stopping, checkpoints), ``*_module`` the pure ``nn.Module``
of each model, and ``ncf`` / ``multvae`` the :class:`~pipelines.models.base.Recommender`
wrappers the registry points at.

Nothing here imports torch at module level except ``training`` and the ``*_module`` files,
which the wrappers import inside ``fit``: validating a config or loading a saved model for
scoring never needs torch (fitted models score with NumPy).
"""
