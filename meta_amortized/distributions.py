"""Small distribution pytrees: diagonal Gaussian, Bernoulli and Categorical.

Each distribution is a frozen dataclass registered as a pytree, so it passes
through `jax.jit`, `jax.vmap` and `jax.lax.scan` like an array. Event axes are
the trailing `event_ndims` axes (one by default): `log_prob` sums over them and
returns an array of the batch shape.

A shape mismatch between the parameters of a distribution, or between the two
distributions of a KL, is a ValueError naming both shapes, raised when the
distribution is built (never a silent broadcast).

Examples:
  >>> import jax, jax.numpy as jnp
  >>> from meta_amortized.distributions import DiagonalGaussian, kl_divergence, standard_normal_like
  >>> q = DiagonalGaussian(jnp.zeros(3), jnp.zeros(3))
  >>> q.sample(jax.random.key(0)).shape
  (3,)
  >>> float(kl_divergence(q, standard_normal_like(q)))
  0.0
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

__all__ = ["Bernoulli", "Categorical", "DiagonalGaussian", "has_analytic_kl", "kl_divergence", "standard_normal_like"]

_LOG_2PI = math.log(2.0 * math.pi)


def _check_same_shape(what: str, first: str, a, second: str, b) -> None:
  """Raises ValueError when two parameters have different shapes. Leaves without a shape (JAX unflattens pytrees
  with placeholders, such as `vmap`'s axis specs) are not checked."""
  shape_a, shape_b = getattr(a, "shape", None), getattr(b, "shape", None)
  if shape_a is not None and shape_b is not None and tuple(shape_a) != tuple(shape_b):
    raise ValueError(f"{what}: {first} has shape {tuple(shape_a)} but {second} has shape {tuple(shape_b)}; "
                     "they must be equal (broadcast them explicitly)")


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

  Raises:
    ValueError: `mean` and `log_variance` differ in shape.

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.distributions import DiagonalGaussian
    >>> q = DiagonalGaussian(jnp.zeros((2, 3)), jnp.zeros((2, 3)))   # batch (2,), event (3,)
    >>> [round(v, 3) for v in q.log_prob(jnp.zeros((2, 3))).tolist()]   # -3/2 log(2 pi) each
    [-2.757, -2.757]
  """

  mean: jax.Array
  log_variance: jax.Array
  event_ndims: int = dataclasses.field(default=1, metadata=dict(static=True))

  def __post_init__(self):
    _check_same_shape("DiagonalGaussian", "mean", self.mean, "log_variance", self.log_variance)

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

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.distributions import Bernoulli
    >>> round(float(Bernoulli(jnp.zeros(4)).log_prob(jnp.array([0.0, 1.0, 0.5, 1.0]))), 3)   # 4 log(1/2)
    -2.773
  """

  logits: jax.Array
  event_ndims: int = dataclasses.field(default=1, metadata=dict(static=True))
  # With clamp > 0, log_prob clamps the probabilities to [clamp, 1 - clamp] first, as the original MetaVAE code
  # (1e-7): each element's log-probability is then at least log(clamp), and its gradient is zero past the clamp.
  clamp: float = dataclasses.field(default=0.0, metadata=dict(static=True))

  def __post_init__(self):
    if not 0.0 <= self.clamp < 0.5:
      raise ValueError(f"Bernoulli clamp={self.clamp!r} is not allowed; expected a probability in [0, 0.5)")

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
    if self.clamp:
      probs = jnp.clip(self.probs, self.clamp, 1.0 - self.clamp)
      return _sum_event(value * jnp.log(probs) + (1.0 - value) * jnp.log1p(-probs), self.event_ndims)
    # x log s(l) + (1 - x) log s(-l) = x l - softplus(l), without log(0) at large |l|.
    return _sum_event(value * self.logits - jax.nn.softplus(self.logits), self.event_ndims)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Categorical:
  """A categorical distribution over the last axis of `logits` (not normalised).

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.distributions import Categorical
    >>> round(float(Categorical(jnp.log(jnp.array([0.25, 0.75]))).log_prob(jnp.array(1))), 4)   # log 0.75
    -0.2877
  """

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
  """N(0, I) with the shape, dtype and event axes of `reference`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.distributions import DiagonalGaussian, standard_normal_like
    >>> standard_normal_like(DiagonalGaussian(jnp.ones((2, 3)), jnp.ones((2, 3)))).mean.shape
    (2, 3)
  """
  zeros = jnp.zeros_like(reference.mean)
  return DiagonalGaussian(zeros, zeros, reference.event_ndims)


def kl_divergence(q, p) -> jax.Array:
  """Analytic KL(q || p) for two diagonal Gaussians or two categoricals.

  Returns an array of the batch shape. Raises NotImplementedError for other
  pairs; `objectives.elbo` then falls back to a Monte Carlo estimate.

  Raises:
    ValueError: the two distributions' parameters differ in shape (a prior of another latent size).

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.distributions import DiagonalGaussian, kl_divergence
    >>> q = DiagonalGaussian(jnp.ones(2), jnp.zeros(2))               # N(1, I) in 2-D
    >>> float(kl_divergence(q, DiagonalGaussian(jnp.zeros(2), jnp.zeros(2))))  # |1 - 0|^2 / 2 per dimension
    1.0
  """
  if isinstance(q, DiagonalGaussian) and isinstance(p, DiagonalGaussian):
    _check_same_shape("kl_divergence(q, p)", "q.mean", q.mean, "p.mean", p.mean)
    # 0.5 [lv_p - lv_q + exp(lv_q - lv_p) + (m_q - m_p)^2 / v_p - 1], written with
    # differences of log-variances so that tiny variances do not overflow.
    scaled = (q.mean - p.mean) * jnp.exp(-0.5 * p.log_variance)
    log_ratio = q.log_variance - p.log_variance
    terms = 0.5 * (jnp.expm1(log_ratio) - log_ratio + scaled**2)
    return _sum_event(terms, q.event_ndims)
  if isinstance(q, Categorical) and isinstance(p, Categorical):
    _check_same_shape("kl_divergence(q, p)", "q.logits", q.logits, "p.logits", p.logits)
    return jnp.sum(q.probs * (q.log_probs - p.log_probs), axis=-1)
  raise NotImplementedError(f"no analytic KL between {type(q).__name__} and {type(p).__name__}")


def has_analytic_kl(q, p) -> bool:
  """Whether `kl_divergence(q, p)` has a closed form.

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.distributions import Bernoulli, DiagonalGaussian, has_analytic_kl
    >>> q = DiagonalGaussian(jnp.zeros(2), jnp.zeros(2))
    >>> has_analytic_kl(q, q), has_analytic_kl(q, Bernoulli(jnp.zeros(2)))
    (True, False)
  """
  return type(q) is type(p) and isinstance(q, (DiagonalGaussian, Categorical))
