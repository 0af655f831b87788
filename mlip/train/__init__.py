"""Training: configuration -> data and statistics -> model -> optimisation loop -> run directory.

- :mod:`mlip.train.run`: one training run from a :class:`mlip.config.Config` (``mlip-train``);
- :mod:`mlip.train.trainer`: the epoch loop (EMA, schedule, stage two, early stopping, checkpoints,
  non-finite losses) with :class:`~mlip.train.trainer.TrainerHooks` as the seam for distributed training;
- :mod:`mlip.train.loss`: weighted MSE / Huber / universal losses;
- :mod:`mlip.train.optim`: optimiser parameter groups, schedules, EMA;
- :mod:`mlip.train.checkpoint`: atomic, ``weights_only`` checkpoints with RNG states;
- :mod:`mlip.train.metrics`: per-head / per-config_type error tables;
- :mod:`mlip.train.statistics`: E0s, neighbour count, scale and shift from the training set;
- :mod:`mlip.train.evaluation`: ``mlip-eval``; :mod:`mlip.train.plot`: learning curves.
"""
