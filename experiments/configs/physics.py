"""Compiled inference for inclined planes (Wu et al., demo 2; docs/design.md section 6).

    python -m experiments.physics --config experiments/configs/physics.py --workdir workdirs/physics

Budget: 4000 Adam steps for the MetaVAE over the 25 training planes and for the VAE of one plane; the MSE of the
inferred friction on the 304-plane test grid. The quick config (`:quick`) runs end to end in about 4 s on the
project's 2-core CPU machine (`python -m experiments.quick_results`); it checks the pipeline, not the numbers. The
paper: MSE below 0.001 for angles in [20, 70] and lengths in [2, 20]; results.json also holds the Bayes-optimal
posterior mean's MSE over the same region, the floor to compare with.
What this budget reaches, seed by seed, and the minutes each seed trained, on which machine: docs/results.md,
written from the committed result files (results/physics/) by `python -m experiments.report tables`.
"""

import ml_collections

from experiments.configs.common import training_config


def get_config(mode: str | None = None) -> ml_collections.ConfigDict:
  c = training_config(mode, num_steps=4000)
  # Simulator.
  c.gravity = 9.8
  c.noise_std = 0.02
  c.max_time = 10.0  # the clock stops here: a box that never slides (or is slower) is observed at max_time
  c.mu_min = 0.0001
  c.mu_max = 1.0
  c.train_lengths = (2.0, 4.0, 6.0, 8.0, 10.0)
  c.train_angles = (20.0, 30.0, 40.0, 50.0, 60.0)
  c.vae_length = 10.0
  c.vae_angle = 45.0
  c.test_lengths = tuple(float(v) for v in range(1, 20))
  c.test_angles = tuple(float(v) for v in range(5, 81, 5))
  # Meta-inference network and training.
  c.set_size = 64  # N simulated (mu, t) pairs of the same plane
  c.batch_size = 128  # queries per plane and step
  c.hidden = 128
  # Evaluation.
  c.test_simulations = 1000  # per test plane
  c.test_sets = 20  # distinct sets D per test plane, each shared by test_simulations / test_sets queries
  c.bayes_grid = 4000  # grid points over mu for the Bayes-optimal posterior mean
  c.region_angles = (20.0, 70.0)
  c.region_lengths = (2.0, 20.0)
  if mode == "quick":
    c.set_size = 16
    c.batch_size = 16
    c.hidden = 16
    c.num_steps = 60
    c.log_every = 20
    c.test_lengths = (2.0, 10.0, 18.0)
    c.test_angles = (10.0, 45.0, 70.0)
    c.test_simulations = 40
    c.test_sets = 4
    c.bayes_grid = 200
  return c
