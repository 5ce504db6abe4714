"""Transformation invariance on MNIST (Wu et al., Table 2 and Figure 7; docs/design.md sections 1-5).

    python -m experiments.mnist_rotate --config experiments/configs/mnist_rotate.py \
        --config.data.manual_dir=../shared/data/mnist --config.model=meta_vae --config.split=sparse \
        --workdir workdirs/rotate_sparse_meta_vae

(and `mnist_scale`, `mnist_shear`; `--config.model` one of `experiments.variants.MODELS`). Budget: the original's
60,000 steps of batch 100 (100 epochs of 600), then the linear probe on every unseen value's 60,000 training and
10,000 test codes; `--config.num_steps=3000` is the budget of the reproduction's Table 2. The quick config
(`:quick`) runs end to end in 2-7 s per model on the project's 2-core CPU machine (`python -m
experiments.quick_results`); it checks the pipeline, not the numbers. The paper's Table 2 (MetaVAE / VHE + VampPrior
/ VHE): rotation 0.885 / 0.830 / 0.793, scale 0.893 / 0.767 / 0.463, shear 0.844 / 0.679 / 0.602.
What this budget reaches, seed by seed, and the minutes each seed trained, on which machine: docs/results.md,
written from the committed result files (results/mnist_table2/) by `python -m experiments.report tables`.
"""

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
