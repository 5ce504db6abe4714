"""Clustering mixtures of two Gaussians (Wu et al., demo 1; docs/design.md section 6).

    python -m experiments.clustering --config experiments/configs/clustering.py --workdir workdirs/clustering

Budget: 3000 Adam steps for each MetaVAE (N = 10, 20, 50 and the training-mixture sweep) and `vae_num_steps` for the
VAE; 1000 unseen test mixtures. The quick config (`:quick`) runs end to end in about 9 s on the project's 2-core CPU
machine (`python -m experiments.quick_results`); it checks the pipeline, not the numbers. The paper's errors
(VAE 27.9 %, MetaVAE 21.2 / 15.8 / 9.9 % for N = 10 / 20 / 50) are in results.json's `paper` field.
What this budget reaches, seed by seed, and the minutes each seed trained, on which machine: docs/results.md,
written from the committed result files (results/clustering/) by `python -m experiments.report tables`.
"""

import ml_collections

from experiments.configs.common import training_config


def get_config(mode: str | None = None) -> ml_collections.ConfigDict:
  c = training_config(mode, num_steps=3000)
  # The meta-distribution: even mixtures of two isotropic Gaussians, means ~ U(-mean_range, mean_range)^data_dim.
  c.data_dim = 2
  c.component_variance = 0.1
  c.mean_range = 5.0
  c.num_train_mixtures = 500  # training distributions, one decoder each
  c.set_sizes = (10, 20, 50)  # N: the summary set of a mixture; one MetaVAE per value
  # The paper's text reads N as the number of mixtures amortized over: a second sweep, each with
  # the largest set size (empty to skip).
  c.train_mixture_counts = (10, 20, 50)
  # Training.
  c.num_distributions_per_step = 100  # K: distributions per step, drawn from the training mixtures
  c.batch_size = 64  # B: queries per distribution, all clustered with one set D drawn afresh each step
  c.hidden = 128
  c.vae_num_steps = 3000
  # Each decoder is two means and a variance, updated only when its mixture is drawn: a larger step lets
  # the means cross the [-5, 5] box within the run.
  c.decoder_learning_rate = 0.05
  # Which of a decoder's two means is component 0 is arbitrary, and the encoder must follow one rule over all
  # mixtures. "anchored_farthest": component 0 is the one nearer the set's point farthest from the set's mean, which
  # the encoder reads too (a rule a continuous g(D, x) can follow everywhere, and that point lies clear of the boundary
  # between close components); "anchored": the same with the set's first point, which near that boundary names a
  # component by chance; "matched": both orders of each decoder scored in every step, the better kept (the order a
  # decoder parameter, fitted exactly; in 2-D g must still flip its labels somewhere, and fails on the mixtures near
  # there); "fixed": the paper's MetaELBO, the order where initialisation put it.
  c.decoder_labels = "anchored_farthest"
  # Each decoder's variance: "learned" (a parameter of the decoder, as the paper) or "known" (the meta-distribution's
  # component_variance, as the Bayes floors assume).
  c.decoder_variance = "learned"
  # Each decoder's two means at step 0: drawn from the prior of the means ("prior") or two points of its mixture
  # ("data").
  c.decoder_init = "prior"
  # Evaluation on unseen mixtures.
  c.num_test_mixtures = 1000
  c.test_queries = 200
  # The floor beside each N: the Bayes classifier that sees the same set D (the means unknown, their prior known),
  # from bayes_chains Gibbs chains of bayes_steps steps each, the first bayes_burn_in dropped (converged: 16 chains
  # of 1600 steps change the 2-D errors by under 0.02 points).
  c.bayes_chains = 8
  c.bayes_steps = 400
  c.bayes_burn_in = 100
  if mode == "quick":
    c.num_train_mixtures = 50
    c.set_sizes = (10, 50)
    c.train_mixture_counts = (10,)
    c.num_distributions_per_step = 16
    c.batch_size = 8
    c.hidden = 16
    c.num_steps = 60
    c.vae_num_steps = 60
    c.log_every = 20
    c.num_test_mixtures = 50
    c.test_queries = 20
    c.bayes_chains = 2
    c.bayes_steps = 20
    c.bayes_burn_in = 5
  return c
