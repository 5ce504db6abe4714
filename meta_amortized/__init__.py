"""Meta-amortized variational inference in JAX (Wu et al. 2020; Marino et al. 2018)."""

from meta_amortized import distributions, iterative, networks, objectives, sampling, sharding, training
from meta_amortized.metavae import MetaVAE

__all__ = ["MetaVAE", "distributions", "iterative", "networks", "objectives", "sampling", "sharding", "training"]
