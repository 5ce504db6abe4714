"""Transformation invariance on MNIST (Wu et al., Table 2 and Figure 7; docs/design.md sections 1-5)."""

import ml_collections

from experiments.configs.invariance import invariance_config


def mnist_config(transform: str, mode: str | None = None) -> ml_collections.ConfigDict:
  # The original: batch 100, 100 epochs of 600 steps.
  c = invariance_config(mode, dataset="mnist", transform=transform, num_steps=60000, batch_size=100)
  c.data.num_train_examples = 60000  # first examples of each split (fewer only for quick runs)
  c.data.num_test_examples = 10000
  c.summary_features = (784, 400, 400)
  c.decoder_wide = 4096
  c.eval_batch_size = 500
  if mode == "quick":
    c.data.num_train_examples = 300
    c.data.num_test_examples = 100
    c.batch_size = 20
    c.set_size = 4
    c.hidden = 16
    c.summary_features = (16, 16)
    c.decoder_wide = 32
    c.eval_batch_size = 50
  return c
