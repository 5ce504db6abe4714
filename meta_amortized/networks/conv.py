"""Conv networks for 32 x 32 grey images (Small NORB; docs/design.md section 4): the batch-norm trunk, the decoders,
and the baselines' decoder p(x | z, c)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from meta_amortized.networks.context import embed_with_context
from meta_amortized.networks.layers import nn

__all__ = ["BatchStatNorm", "ConvContextDecoder", "ConvDecoder", "ConvEncoder"]

_CONV_FEATURES = (64, 64, 64, 128, 128, 128, 256, 256, 256)
_CONV_STRIDES = (1, 1, 2, 1, 1, 2, 1, 1, 2)


class ConvEncoder(nn.Module):
  """Nine 3x3 conv layers (64,64,64/2,128,128,128/2,256,256,256/2), batch norm, ELU.

  Input (B, 32, 32, 1); output the flattened 4 x 4 x 256 = 4096 features.
  Batch statistics live in the `batch_stats` collection (`train=True` updates them).

  Examples:
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

  Examples:
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

  Examples:
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

  Examples:
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
    return ConvDecoder(self.features)(embed_with_context(z, c, width=self.width, input_name="from_z",
                                                         use_context=self.use_context, merge=self.context_merge))
