"""Learning sufficient statistics of exponential families (Wu et al., demo 3; docs/design.md section 6).

    python -m experiments.expfam --config experiments/configs/expfam.py --workdir workdirs/expfam

Budget: 3000 Adam steps for each MetaVAE (one per family, and one over 90 distributions of three families) and each
VAE; the MSE of the inferred parameter on unseen distributions of six families. The quick config (`:quick`) runs
end to end in about 13 s on the project's 2-core CPU machine (`python -m experiments.quick_results`); it checks the
pipeline, not the numbers.
What this budget reaches, seed by seed, and the minutes each seed trained, on which machine: docs/results.md,
written from the committed result files (results/expfam/) by `python -m experiments.report tables`.
"""

import ml_collections

from experiments.configs.common import training_config


def get_config(mode: str | None = None) -> ml_collections.ConfigDict:
  c = training_config(mode, num_steps=3000)
  c.dim = 20  # each observation: 20 i.i.d. components
  c.num_per_family = 30  # training distributions per family
  # Parameter ranges (lo, hi): training meta-distribution, and the wider range of the curves.
  c.train_range = ml_collections.ConfigDict(dict(gaussian=(-5.0, 5.0), lognormal=(-2.0, 2.0), exponential=(0.1, 3.0)))
  c.wide_range = ml_collections.ConfigDict(dict(gaussian=(-20.0, 20.0), lognormal=(-4.0, 4.0),
                                                exponential=(0.1, 6.0)))
  # Families no model is trained on (Figure 4): Laplace scale, Weibull shape, symmetric Beta parameter.
  c.unseen_range = ml_collections.ConfigDict(dict(laplace=(0.5, 3.0), weibull=(0.5, 3.0), beta=(0.5, 3.0)))
  c.prior_std = 10.0  # p(z) = N(0, prior_std^2) over the (unconstrained) parameter
  c.set_size = 10  # N observations in the set D
  c.batch_size = 32  # queries per distribution and step
  c.hidden = 128
  c.num_samples = 4  # reparameterised samples per ELBO
  c.num_test_params = 200  # unseen parameters per curve
  c.test_queries = 50  # queries per unseen parameter
  if mode == "quick":
    c.num_per_family = 4
    c.hidden = 16
    c.batch_size = 8
    c.num_steps = 40
    c.log_every = 20
    c.num_test_params = 10
    c.test_queries = 5
  return c
