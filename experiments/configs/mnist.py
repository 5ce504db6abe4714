"""Transformation invariance on MNIST (Wu et al., Table 2 and Figure 7; REFERENCE.md sections 1-5)."""

import ml_collections

from experiments.configs.common import training_config


def mnist_config(transform: str, mode: str | None = None) -> ml_collections.ConfigDict:
  # The original: Adam 2e-4, batch 100, 100 epochs of 600 steps.
  c = training_config(mode, num_steps=60000, learning_rate=2e-4)
  c.transform = transform
  c.split = "sparse"  # interleaved | sparse | contiguous
  c.model = "meta_vae"  # meta_vae | ns | vhe | vhe_vampprior
  c.data = ml_collections.ConfigDict()
  c.data.manual_dir = ml_collections.FieldReference(None, field_type=str)  # the original files; None downloads
  c.data.data_dir = "workdirs/tensorflow_datasets"
  c.data.num_train_examples = 60000  # first examples of each split (fewer only for quick runs)
  c.data.num_test_examples = 10000
  # Models (REFERENCE.md sections 1 and 2).
  c.batch_size = 100
  c.set_size = 10
  c.latent_dim = 40
  c.hidden = 400
  c.summary_features = (784, 400, 400)
  c.context_dim = 300
  c.decoder_wide = 4096
  c.num_pseudo_sets = 500
  c.pseudo_set_size = 10
  # VHE context-KL weight; None is the VHE paper's 1 / |X| with X the distribution's training images.
  c.context_kl_weight = ml_collections.FieldReference(None, field_type=float)
  # Linear probe.
  c.probe_tolerance = 1e-5
  c.probe_max_iterations = 1000
  c.eval_batch_size = 500
  c.checkpoint_every_seconds = 300.0
  if mode == "quick":
    c.data.num_train_examples = 300
    c.data.num_test_examples = 100
    c.batch_size = 20
    c.set_size = 4
    c.latent_dim = 4
    c.hidden = 16
    c.summary_features = (16, 16)
    c.context_dim = 6
    c.decoder_wide = 32
    c.num_pseudo_sets = 3
    c.pseudo_set_size = 4
    c.num_steps = 20
    c.log_every = 10
    c.probe_max_iterations = 200
    c.eval_batch_size = 50
  return c
