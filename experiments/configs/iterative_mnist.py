"""Standard against iterative amortized inference on binarised MNIST (Marino et al.; docs/design.md section 7).

    python -m experiments.iterative_mnist --config experiments/configs/iterative_mnist.py \
        --config.data.manual_dir=../shared/data/mnist --workdir workdirs/iterative_mnist

Budget: 20,000 steps of batch 64 for each of the four models (the same for all); the test -log p(x) from 5000
importance samples on the 10,000 test images. The quick config (`:quick`) runs end to end in about 31 s on the
project's 2-core CPU machine (`python -m experiments.quick_results`); it checks the pipeline, not the numbers.
The paper (single level, its own budget): 84.14 nats standard, 83.84 iterative.
Its converged NLL takes about a thousand epochs, which the 2-core machine cannot run. What this budget reaches, seed
by seed, and the minutes each seed trained: docs/results.md, written from the committed result files
(results/iterative_mnist/) by `python -m experiments.report tables`.
"""

import ml_collections

from experiments.configs.common import data_config, training_config


def get_config(mode: str | None = None) -> ml_collections.ConfigDict:
  # Adam 2e-4, decayed by 0.999 per epoch; batch 64. The budget is the same for every model.
  c = training_config(mode, num_steps=20000, learning_rate=2e-4)
  c.models = ("standard", "iterative_gradient", "iterative_gradient_standardized", "iterative_error")
  c.data = data_config()
  c.data.num_train_examples = 60000  # the first training images (fewer only for quick runs)
  c.batch_size = 64
  c.latent_dim = 64
  c.hidden = 512
  c.num_refinements = 5  # T, in training and test
  c.num_samples = 10  # samples per ELBO of the iterative models (the standard one uses 1)
  c.test_binarization_seed = 0
  c.eval_steps = 50  # refinement steps of the test ELBO curve
  c.eval_examples = 1000  # test images of the ELBO curves
  c.nll_samples = 5000  # importance samples of the test -log p(x)
  c.nll_examples = 10000  # test images of the NLL
  c.nll_chunk = 100  # test images per evaluation call
  c.baseline_lrs = (0.01, 0.1, 1.0)  # the learning rates tried for SGD and Adam on the posterior; the best is kept
  c.checkpoint_every_seconds = 300.0
  if mode == "quick":
    c.data.num_train_examples = 500
    c.batch_size = 8
    c.latent_dim = 4
    c.hidden = 16
    c.num_refinements = 2
    c.num_samples = 2
    c.num_steps = 10
    c.log_every = 5
    c.eval_steps = 4
    c.eval_examples = 20
    c.nll_samples = 20
    c.nll_examples = 20
    c.nll_chunk = 10
    c.baseline_lrs = (0.1,)
  return c
