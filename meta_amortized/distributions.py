"""Small distribution pytrees: diagonal Gaussian, Bernoulli and Categorical.

Each distribution is a frozen dataclass registered as a pytree, so it passes
through `jax.jit`, `jax.vmap` and `jax.lax.scan` like an array. Event axes are
the trailing `event_ndims` axes (one by default): `log_prob` sums over them and
returns an array of the batch shape.

Example:
  >>> q = DiagonalGaussian(jnp.zeros(3), jnp.zeros(3))
  >>> z = q.sample(jax.random.key(0))
  >>> kl_divergence(q, standard_normal_like(q))
  Array(0., dtype=float32)
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)


def _sum_event(values: jax.Array, event_ndims: int) -> jax.Array:
  if event_ndims == 0:
    return values
  return jnp.sum(values, axis=tuple(range(-event_ndims, 0)))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DiagonalGaussian:
  """N(mean, diag(exp(log_variance))), parameterised by its log-variance.

  Attributes:
    mean: array of shape batch_shape + event_shape.
    log_variance: array of the same shape.
    event_ndims: how many trailing axes are event axes (static).
  """

  mean: jax.Array
  log_variance: jax.Array
  event_ndims: int = dataclasses.field(default=1, metadata=dict(static=True))

  @property
  def stddev(self) -> jax.Array:
    return jnp.exp(0.5 * self.log_variance)

  def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
    """Reparameterised sample of shape sample_shape + mean.shape."""
    noise = jax.random.normal(key, sample_shape + jnp.shape(self.mean), jnp.result_type(self.mean))
    return self.mean + self.stddev * noise

  def log_prob(self, value: jax.Array) -> jax.Array:
    # (x - m)^2 / v computed as ((x - m) * exp(-lv / 2))^2 stays finite for tiny variances.
    scaled = (value - self.mean) * jnp.exp(-0.5 * self.log_variance)
    return _sum_event(-0.5 * (_LOG_2PI + self.log_variance + scaled**2), self.event_ndims)

  def entropy(self) -> jax.Array:
    return _sum_event(0.5 * (_LOG_2PI + 1.0 + self.log_variance), self.event_ndims)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Bernoulli:
  """Independent Bernoulli variables with the given logits.

  `log_prob` accepts values in [0, 1] (grey levels as soft targets, as the
  MetaVAE paper's MNIST models do) and is exact and finite for any logit.
  """

  logits: jax.Array
  event_ndims: int = dataclasses.field(default=1, metadata=dict(static=True))

  @property
  def probs(self) -> jax.Array:
    return jax.nn.sigmoid(self.logits)

  @property
  def mean(self) -> jax.Array:
    return self.probs

  def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
    shape = sample_shape + jnp.shape(self.logits)
    return jax.random.bernoulli(key, self.probs, shape).astype(jnp.result_type(self.logits))

  def log_prob(self, value: jax.Array) -> jax.Array:
    # x log s(l) + (1 - x) log s(-l) = x l - softplus(l), without log(0) at large |l|.
    return _sum_event(value * self.logits - jax.nn.softplus(self.logits), self.event_ndims)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Categorical:
  """A categorical distribution over the last axis of `logits` (not normalised)."""

  logits: jax.Array

  @property
  def log_probs(self) -> jax.Array:
    return jax.nn.log_softmax(self.logits, axis=-1)

  @property
  def probs(self) -> jax.Array:
    return jax.nn.softmax(self.logits, axis=-1)

  def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
    return jax.random.categorical(key, self.logits, axis=-1, shape=sample_shape + self.logits.shape[:-1])

  def log_prob(self, value: jax.Array) -> jax.Array:
    """Log-probability of integer category indices of the batch shape."""
    return jnp.take_along_axis(self.log_probs, value[..., None].astype(jnp.int32), axis=-1)[..., 0]

  def entropy(self) -> jax.Array:
    return -jnp.sum(self.probs * self.log_probs, axis=-1)


def standard_normal_like(reference: DiagonalGaussian) -> DiagonalGaussian:
  """N(0, I) with the shape, dtype and event axes of `reference`."""
  zeros = jnp.zeros_like(reference.mean)
  return DiagonalGaussian(zeros, zeros, reference.event_ndims)


def kl_divergence(q, p) -> jax.Array:
  """Analytic KL(q || p) for two diagonal Gaussians or two categoricals.

  Returns an array of the batch shape. Raises NotImplementedError for other
  pairs; `objectives.elbo` then falls back to a Monte Carlo estimate.
  """
  if isinstance(q, DiagonalGaussian) and isinstance(p, DiagonalGaussian):
    # 0.5 [lv_p - lv_q + exp(lv_q - lv_p) + (m_q - m_p)^2 / v_p - 1], written with
    # differences of log-variances so that tiny variances do not overflow.
    scaled = (q.mean - p.mean) * jnp.exp(-0.5 * p.log_variance)
    log_ratio = q.log_variance - p.log_variance
    terms = 0.5 * (jnp.expm1(log_ratio) - log_ratio + scaled**2)
    return _sum_event(terms, q.event_ndims)
  if isinstance(q, Categorical) and isinstance(p, Categorical):
    return jnp.sum(q.probs * (q.log_probs - p.log_probs), axis=-1)
  raise NotImplementedError(f"no analytic KL between {type(q).__name__} and {type(p).__name__}")


def has_analytic_kl(q, p) -> bool:
  """Whether `kl_divergence(q, p)` has a closed form."""
  return type(q) is type(p) and isinstance(q, (DiagonalGaussian, Categorical))
