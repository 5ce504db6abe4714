"""Flax (Linen) networks of the MetaVAE and its baselines (the `models` extra).

Linen's `init` / `apply` keeps parameters as plain pytrees, which is what the
objectives and the per-distribution decoder bank (parameters stacked on a
leading axis, applied with `jax.vmap`) want. Sizes default to the original code's
(docs/design.md): the MLP MetaVAE on MNIST and the baselines' networks.

Size arguments have one type per name: `hidden` and `features` are sequences of
layer widths, `width`, `wide`, `latent_dim`, `context_dim` and `output_dim` are ints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from meta_amortized._extras import require
from meta_amortized.distributions import DiagonalGaussian
from meta_amortized.iterative import Update

nn = require("flax.linen", needed_by=__name__)

__all__ = [
    "CONTEXT_MERGES",
    "MLP",
    "AggregationNetwork",
    "BatchStatNorm",
    "ContextPosterior",
    "ConvContextDecoder",
    "ConvDecoder",
    "ConvEncoder",
    "Decoder",
    "Encoder",
    "IterativeEncoder",
    "LatentPosterior",
    "LatentPrior",
    "MetaInferenceNetwork",
    "QueryOnlyInference",
    "StatisticianDecoder",
    "SummaryNetwork",
    "gaussian_from_params",
    "init_stacked",
    "join_context",
    "leaky_relu",
]

Activation = Callable[[jax.Array], jax.Array]


def leaky_relu(x: jax.Array) -> jax.Array:
  """LeakyReLU with slope 0.2, the summary network's nonlinearity.

  Example:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.networks import leaky_relu
    >>> leaky_relu(jnp.array([-1.0, 2.0])).tolist()
    [-0.20000000298023224, 2.0]
  """
  return jax.nn.leaky_relu(x, negative_slope=0.2)


class MLP(nn.Module):
  """Dense layers with `activation` between them (and after the last if `activate_final`).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> mlp = networks.MLP((8, 3))
    >>> x = jnp.ones((5, 4))
    >>> mlp.apply(mlp.init(jax.random.key(0), x), x).shape
    (5, 3)
  """

  features: Sequence[int]
  activation: Activation = nn.relu
  activate_final: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, width in enumerate(self.features):
      x = nn.Dense(width, name=f"dense_{i}")(x)
      if i + 1 < len(self.features) or self.activate_final:
        x = self.activation(x)
    return x


CONTEXT_MERGES = ("sum", "concat")


def join_context(from_input: jax.Array, from_context: jax.Array | None, merge: str) -> jax.Array:
  """ELU of the embeddings (..., H) of the input (x or z) and of the context c, which the next layer reads: summed,
  then ELU (`merge="sum"`, as the Neural Statistician's networks), or ELU of each, concatenated to (..., 2H)
  (`"concat"`, as the original MetaVAE code's NS and VHE). The input's alone when `from_context` is None.

  Example:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.networks import join_context
    >>> join_context(jnp.ones((2, 4)), jnp.ones((2, 4)), "concat").shape
    (2, 8)
  """
  if merge not in CONTEXT_MERGES:
    raise ValueError(f"merge={merge!r} is not one of {CONTEXT_MERGES}")
  if from_context is None:
    return nn.elu(from_input)
  if merge == "sum":
    return nn.elu(from_input + from_context)
  return jnp.concatenate([nn.elu(from_input), nn.elu(from_context)], axis=-1)


def gaussian_from_params(params: jax.Array) -> DiagonalGaussian:
  """Splits the last axis of (..., 2Z) into a mean and a log-variance, in float32 (whatever the networks'
  compute dtype: the bounds are computed in float32).

  Example:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.networks import gaussian_from_params
    >>> gaussian_from_params(jnp.zeros((3, 4))).mean.shape             # Z = 2
    (3, 2)
  """
  mean, log_variance = jnp.split(params.astype(jnp.float32), 2, axis=-1)
  return DiagonalGaussian(mean, log_variance)


class SummaryNetwork(nn.Module):
  """h(D): a per-element MLP followed by the mean over the set axis (-2 after flattening).

  Permutation invariant by construction. The mean is over the set, as the paper
  says (the original code divides the sum by the batch size).

  Input (..., N, *event); output (..., features[-1]).

  Example:
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


class AggregationNetwork(nn.Module):
  """r(CONCAT(x, h(D))): an MLP that outputs the diagonal Gaussian q(z | D, x).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> r = networks.AggregationNetwork((8,), latent_dim=2)
    >>> x, summary = jnp.ones((3, 6)), jnp.ones((3, 5))
    >>> r.apply(r.init(jax.random.key(0), x, summary), x, summary).mean.shape
    (3, 2)
  """

  hidden: Sequence[int] = (400, 400)
  latent_dim: int = 40
  activation: Activation = nn.relu

  @nn.compact
  def __call__(self, x: jax.Array, summary: jax.Array) -> DiagonalGaussian:
    inputs = jnp.concatenate([x, summary], axis=-1)
    return gaussian_from_params(MLP(tuple(self.hidden) + (2 * self.latent_dim,), self.activation)(inputs))


class MetaInferenceNetwork(nn.Module):
  """g(D, x) = r(CONCAT(x, h(D))) (Wu et al., implementation details).

  `sets` is either one set per query, (B, N, D), or one set shared by the batch,
  (N, D); `queries` is (B, D). Returns q(z | D, x) of batch shape (B,).

  Example:
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
    self.aggregation = AggregationNetwork(self.hidden, self.latent_dim, self.activation)

  def summarize(self, sets: jax.Array) -> jax.Array:
    """h(D) (..., S) of sets (..., N, D); `apply(params, sets, method="summarize")`."""
    return self.summary(sets)

  def __call__(self, sets: jax.Array, queries: jax.Array) -> DiagonalGaussian:
    summary = self.summarize(sets)
    summary = jnp.broadcast_to(summary, queries.shape[:-1] + summary.shape[-1:])
    return self.aggregation(queries, summary)


class Encoder(nn.Module):
  """A plain VAE encoder q(z | x): MLP to a diagonal Gaussian.

  Example:
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

  Example:
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

  Example:
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


def init_stacked(module: nn.Module, key: jax.Array, num: int, *example_inputs: Any) -> Any:
  """Initialises `num` independent copies of `module`, parameters stacked on axis 0.

  This is the bank of per-distribution decoders: apply it with
  `jax.vmap(module.apply)(stacked, inputs)` (one batched call for all K decoders)
  or pick decoder k with `jax.tree.map(lambda p: p[k], stacked)`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> decoder = networks.Decoder((8,), output_dim=6)
    >>> stacked = networks.init_stacked(decoder, jax.random.key(0), 4, jnp.ones((1, 2)))
    >>> jax.vmap(decoder.apply, (0, None))(stacked, jnp.ones((3, 2))).shape   # 4 decoders at once
    (4, 3, 6)
  """
  return jax.vmap(lambda k: module.init(k, *example_inputs))(jax.random.split(key, num))


# --- Conv networks for 32 x 32 grey images (Small NORB; docs/design.md section 4) ---

_CONV_FEATURES = (64, 64, 64, 128, 128, 128, 256, 256, 256)
_CONV_STRIDES = (1, 1, 2, 1, 1, 2, 1, 1, 2)


class ConvEncoder(nn.Module):
  """Nine 3x3 conv layers (64,64,64/2,128,128,128/2,256,256,256/2), batch norm, ELU.

  Input (B, 32, 32, 1); output the flattened 4 x 4 x 256 = 4096 features.
  Batch statistics live in the `batch_stats` collection (`train=True` updates them).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> trunk = networks.ConvEncoder((2, 2, 2, 4, 4, 4, 4, 4, 4))
    >>> images = jnp.ones((3, 32, 32, 1))
    >>> trunk.apply(trunk.init(jax.random.key(0), images, train=False), images, train=False).shape  # 4 x 4 x 4
    (3, 64)
  """

  features: Sequence[int] = _CONV_FEATURES
  strides: Sequence[int] = _CONV_STRIDES

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    x = images
    for width, stride in zip(self.features, self.strides, strict=False):
      x = nn.Conv(width, (3, 3), strides=(stride, stride), padding="SAME")(x)
      x = nn.BatchNorm(use_running_average=not train)(x)
      x = nn.elu(x)
    return x.reshape(x.shape[:-3] + (-1,))


class BatchStatNorm(nn.Module):
  """Normalisation by the statistics of the batch in hand (every axis but the features), then a learned
  scale and bias: batch norm in training mode, kept in every mode.

  The conv decoders use it: a decoder only ever runs inside a bound, on the batch of one step, so it
  needs no running averages, and being stateless it runs inside the objectives' vmaps and closures.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> norm = networks.BatchStatNorm()
    >>> x = jnp.arange(6.0).reshape(3, 2)
    >>> [round(v, 4) for v in norm.apply(norm.init(jax.random.key(0), x), x).mean(0).tolist()]
    [0.0, 0.0]
  """

  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes)
    variance = jnp.mean(jnp.square(x - mean), axis=axes)
    scale = self.param("scale", nn.initializers.ones, x.shape[-1:])
    bias = self.param("bias", nn.initializers.zeros, x.shape[-1:])
    return (x - mean) * jax.lax.rsqrt(variance + self.epsilon) * scale + bias


class ConvDecoder(nn.Module):
  """Mirror of `ConvEncoder`: a dense layer to 4 x 4 x 256, then transposed convs to 32 x 32, each followed by
  `BatchStatNorm` and ELU.

  Input (..., Z); output logits (..., 32, 32, channels).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> decoder = networks.ConvDecoder((2, 2, 2, 4, 4, 4, 4, 4, 4))
    >>> z = jnp.ones((3, 2))
    >>> decoder.apply(decoder.init(jax.random.key(0), z), z).shape
    (3, 32, 32, 1)
  """

  features: Sequence[int] = _CONV_FEATURES
  strides: Sequence[int] = _CONV_STRIDES
  channels: int = 1

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    x = nn.Dense(4 * 4 * self.features[-1])(z).reshape(z.shape[:-1] + (4, 4, self.features[-1]))
    x = nn.elu(BatchStatNorm()(x))
    widths = list(reversed(self.features))[1:] + [self.features[0]]
    for width, stride in zip(widths, reversed(self.strides), strict=False):
      x = nn.ConvTranspose(width, (3, 3), strides=(stride, stride), padding="SAME")(x)
      x = nn.elu(BatchStatNorm()(x))
    return nn.Conv(self.channels, (3, 3), padding="SAME")(x)


class ConvContextDecoder(nn.Module):
  """p(x | z, c) of the conv baselines: [z -> H, c -> H] joined (`join_context`), then `ConvDecoder`.

  `use_context=False` drops c -> H: the decoder is p(x | z), c ignored (an ablation, in neither paper).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> decoder = networks.ConvContextDecoder(8, (2, 2, 2, 4, 4, 4, 4, 4, 4))
    >>> z, c = jnp.ones((3, 2)), jnp.ones((3, 5))
    >>> decoder.apply(decoder.init(jax.random.key(0), z, c), z, c).shape
    (3, 32, 32, 1)
  """

  width: int = 400
  features: Sequence[int] = _CONV_FEATURES
  use_context: bool = True
  context_merge: str = "sum"

  @nn.compact
  def __call__(self, z: jax.Array, c: jax.Array) -> jax.Array:
    from_c = nn.Dense(self.width, name="from_c")(c) if self.use_context else None
    return ConvDecoder(self.features)(join_context(nn.Dense(self.width, name="from_z")(z), from_c,
                                                   self.context_merge))


# --- Statistic networks of the Neural Statistician / Variational Homoencoder baselines ---


class ContextPosterior(nn.Module):
  """q(c | D): per-element Dense (ELU, or none for the VHE), mean over the set, Dense to 2C.

  Input (..., N, D); output a Gaussian of batch shape (...,), event (C,).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> q_c = networks.ContextPosterior(width=8, context_dim=3)
    >>> sets = jnp.ones((2, 10, 6))
    >>> q_c.apply(q_c.init(jax.random.key(0), sets), sets).mean.shape
    (2, 3)
  """

  width: int = 400
  context_dim: int = 300
  pre_pool_activation: Activation | None = nn.elu

  @nn.compact
  def __call__(self, sets: jax.Array) -> DiagonalGaussian:
    h = nn.Dense(self.width)(sets)
    if self.pre_pool_activation is not None:
      h = self.pre_pool_activation(h)
    return gaussian_from_params(nn.Dense(2 * self.context_dim)(jnp.mean(h, axis=-2)))


class LatentPosterior(nn.Module):
  """q(z | x, c): [x -> H, c -> H] joined (`join_context`: summed then ELU, or ELU of each concatenated), H, ELU,
  -> 2Z.

  `use_context=False` drops c -> H: the encoder is q(z | x), c ignored (an ablation, in neither paper).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> q_z = networks.LatentPosterior(width=8, latent_dim=2)
    >>> x, c = jnp.ones((4, 6)), jnp.ones((4, 3))
    >>> q_z.apply(q_z.init(jax.random.key(0), x, c), x, c).mean.shape
    (4, 2)
  """

  width: int = 400
  latent_dim: int = 40
  use_context: bool = True
  context_merge: str = "sum"

  @nn.compact
  def __call__(self, x: jax.Array, c: jax.Array) -> DiagonalGaussian:
    from_c = nn.Dense(self.width, name="from_c")(c) if self.use_context else None
    h = join_context(nn.Dense(self.width, name="from_x")(x), from_c, self.context_merge)
    h = nn.elu(nn.Dense(self.width)(h))
    return gaussian_from_params(nn.Dense(2 * self.latent_dim)(h))


class LatentPrior(nn.Module):
  """p(z | c): C -> 400 -> 400 -> 2Z with ELU.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> p_z = networks.LatentPrior((8,), latent_dim=2)
    >>> c = jnp.ones((4, 3))
    >>> p_z.apply(p_z.init(jax.random.key(0), c), c).mean.shape
    (4, 2)
  """

  hidden: Sequence[int] = (400, 400)
  latent_dim: int = 40

  @nn.compact
  def __call__(self, c: jax.Array) -> DiagonalGaussian:
    return gaussian_from_params(MLP(tuple(self.hidden) + (2 * self.latent_dim,), nn.elu)(c))


class StatisticianDecoder(nn.Module):
  """p(x | z, c): [z -> 400, c -> 400] joined (`join_context`: summed then ELU, or ELU of each concatenated), -> 4096,
  ELU, -> output logits.

  `use_context=False` drops c -> 400: the decoder is p(x | z), c ignored (an ablation, in neither paper).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> decoder = networks.StatisticianDecoder(width=8, wide=16, output_dim=6)
    >>> z, c = jnp.ones((4, 2)), jnp.ones((4, 3))
    >>> decoder.apply(decoder.init(jax.random.key(0), z, c), z, c).shape
    (4, 6)
  """

  width: int = 400
  wide: int = 4096
  output_dim: int = 784
  use_context: bool = True
  context_merge: str = "sum"

  @nn.compact
  def __call__(self, z: jax.Array, c: jax.Array) -> jax.Array:
    from_c = nn.Dense(self.width, name="from_c")(c) if self.use_context else None
    h = join_context(nn.Dense(self.width, name="from_z")(z), from_c, self.context_merge)
    h = nn.elu(nn.Dense(self.wide)(h))
    return nn.Dense(self.output_dim)(h)


# --- The iterative inference model (Marino et al.) ---


class IterativeEncoder(nn.Module):
  """The iterative inference model: MLP on [x, mean, log-variance, signal, context] -> `iterative.Update`.

  Attributes:
    hidden: widths of the hidden layers (2 x 512 ELU on MNIST).
    latent_dim: Z.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized.distributions import DiagonalGaussian
    >>> from meta_amortized.networks import IterativeEncoder
    >>> encoder = IterativeEncoder(hidden=(8,), latent_dim=2)
    >>> x, q, signal = jnp.ones((4, 6)), DiagonalGaussian(jnp.zeros((4, 2)), jnp.zeros((4, 2))), jnp.zeros((4, 8))
    >>> params = encoder.init(jax.random.key(0), x, q, signal)
    >>> encoder.apply(params, x, q, signal).mean.shape
    (4, 2)
  """

  hidden: Sequence[int] = (512, 512)
  latent_dim: int = 64

  @nn.compact
  def __call__(self, x: jax.Array, posterior: DiagonalGaussian, signal: jax.Array,
               context: jax.Array | None = None) -> Update:
    inputs = [x, posterior.mean, posterior.log_variance, signal]
    if context is not None:
      inputs.append(jnp.broadcast_to(context, x.shape[:-1] + context.shape[-1:]))
    h = MLP(self.hidden, nn.elu, activate_final=True)(jnp.concatenate(inputs, axis=-1))
    heads = nn.Dense(4 * self.latent_dim)(h)
    return Update(*jnp.split(heads, 4, axis=-1))
