"""The MetaVAE's MLP networks (MNIST; sizes of the original code, docs/design.md section 1): the summary network h,
the meta-inference network g(D, x) = r(CONCAT(x, h(D))), a plain encoder and the decoders."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from meta_amortized.distributions import DiagonalGaussian
from meta_amortized.networks.layers import MLP, Activation, gaussian_from_params, leaky_relu, nn

__all__ = ["Decoder", "Encoder", "MetaInferenceNetwork", "QueryOnlyInference", "SummaryNetwork"]


class SummaryNetwork(nn.Module):
  """h(D): a per-element MLP followed by the mean over the set axis (-2 after flattening).

  Permutation invariant by construction. The mean is over the set, as the paper
  says (the original code divides the sum by the batch size).

  Input (..., N, *event); output (..., features[-1]).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> h = networks.SummaryNetwork((8, 5))
    >>> sets = jnp.ones((3, 10, 6))                                     # 3 sets of 10 elements
    >>> h.apply(h.init(jax.random.key(0), sets), sets).shape
    (3, 5)
  """

  features: Sequence[int] = (784, 400, 400)
  activation: Activation = leaky_relu
  event_ndims: int = 1

  @nn.compact
  def __call__(self, sets: jax.Array) -> jax.Array:
    flat = sets.reshape(sets.shape[: sets.ndim - self.event_ndims] + (-1,))
    per_element = MLP(self.features, self.activation, name="element_mlp")(flat)
    return jnp.mean(per_element, axis=-2)


class MetaInferenceNetwork(nn.Module):
  """g(D, x) = r(CONCAT(x, h(D))) (Wu et al., implementation details).

  `sets` is either one set per query, (B, N, D), or one set shared by the batch,
  (N, D); `queries` is (B, D). Returns q(z | D, x) of batch shape (B,).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> g = networks.MetaInferenceNetwork((8,), (8,), latent_dim=2)
    >>> sets, queries = jnp.ones((3, 10, 6)), jnp.ones((3, 6))           # a set per query
    >>> g.apply(g.init(jax.random.key(0), sets, queries), sets, queries).mean.shape
    (3, 2)
  """

  summary_features: Sequence[int] = (784, 400, 400)
  hidden: Sequence[int] = (400, 400)
  latent_dim: int = 40
  activation: Activation = nn.relu  # of r; h keeps its LeakyReLU

  def setup(self):
    self.summary = SummaryNetwork(self.summary_features)
    self.aggregation = Encoder(self.hidden, self.latent_dim, self.activation)  # r, on CONCAT(x, h(D))

  def summarize(self, sets: jax.Array) -> jax.Array:
    """h(D) (..., S) of sets (..., N, D); `apply(params, sets, method="summarize")`."""
    return self.summary(sets)

  def __call__(self, sets: jax.Array, queries: jax.Array) -> DiagonalGaussian:
    summary = self.summarize(sets)
    summary = jnp.broadcast_to(summary, queries.shape[:-1] + summary.shape[-1:])
    return self.aggregation(jnp.concatenate([queries, summary], axis=-1))


class Encoder(nn.Module):
  """A plain VAE encoder q(z | x): MLP to a diagonal Gaussian.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> encoder = networks.Encoder((8,), latent_dim=2)
    >>> x = jnp.ones((3, 6))
    >>> encoder.apply(encoder.init(jax.random.key(0), x), x).log_variance.shape
    (3, 2)
  """

  hidden: Sequence[int] = (400, 400)
  latent_dim: int = 40
  activation: Activation = nn.relu

  @nn.compact
  def __call__(self, x: jax.Array) -> DiagonalGaussian:
    return gaussian_from_params(MLP(tuple(self.hidden) + (2 * self.latent_dim,), self.activation)(x))


class QueryOnlyInference(nn.Module):
  """q(z | x) behind g(D, x)'s interface: an `Encoder` of the query that ignores the set.

  In a `MetaVAE` with one shared decoder it makes a plain VAE trained on the pooled distributions, the control
  that tells what seeing D adds. It has no h(D), so no `summarize`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> g = networks.QueryOnlyInference((8,), latent_dim=2)
    >>> sets, queries = jnp.ones((3, 10, 6)), jnp.ones((3, 6))
    >>> params = g.init(jax.random.key(0), sets, queries)
    >>> bool(jnp.all(g.apply(params, sets, queries).mean == g.apply(params, 0 * sets, queries).mean))
    True
  """

  hidden: Sequence[int] = (400, 400)
  latent_dim: int = 40
  activation: Activation = nn.relu

  @nn.compact
  def __call__(self, sets: jax.Array, queries: jax.Array) -> DiagonalGaussian:
    del sets
    return Encoder(self.hidden, self.latent_dim, self.activation, name="encoder")(queries)


class Decoder(nn.Module):
  """p(x | z): MLP from z to the logits (or means) of the observation, 40 -> 400 -> 400 -> 784.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> decoder = networks.Decoder((8,), output_dim=6)
    >>> z = jnp.ones((3, 2))
    >>> decoder.apply(decoder.init(jax.random.key(0), z), z).shape
    (3, 6)
  """

  hidden: Sequence[int] = (400, 400)
  output_dim: int = 784
  activation: Activation = nn.relu

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    return MLP(tuple(self.hidden) + (self.output_dim,), self.activation)(z)
