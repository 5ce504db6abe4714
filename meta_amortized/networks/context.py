"""The statistic networks of the Neural Statistician and the Variational Homoencoder (docs/design.md section 2):
q(c | D), q(z | x, c), p(z | c), p(x | z, c)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from meta_amortized.distributions import DiagonalGaussian
from meta_amortized.networks.layers import Activation, gaussian_from_params, nn
from meta_amortized.networks.mlp import Encoder

__all__ = ["CONTEXT_MERGES", "ContextPosterior", "LatentPosterior", "LatentPrior", "StatisticianDecoder",
           "embed_with_context", "join_context"]

CONTEXT_MERGES = ("sum", "concat")


def join_context(from_input: jax.Array, from_context: jax.Array | None, merge: str) -> jax.Array:
  """ELU of the embeddings (..., H) of the input (x or z) and of the context c, which the next layer reads: summed,
  then ELU (`merge="sum"`, as the Neural Statistician's networks), or ELU of each, concatenated to (..., 2H)
  (`"concat"`, as the original MetaVAE code's NS and VHE). The input's alone when `from_context` is None.

  Examples:
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


def embed_with_context(inputs: jax.Array, c: jax.Array, *, width: int, input_name: str, use_context: bool,
                       merge: str) -> jax.Array:
  """`join_context` of Dense(width) of the input (layer `input_name`) and of c (layer "from_c"; none, c ignored,
  without `use_context`): the first layer of every network that reads an input and a context. Call it inside a
  compact method: the layers belong to the calling module.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized.networks import embed_with_context
    >>> from meta_amortized.networks.layers import nn
    >>> class Join(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, c):
    ...     return embed_with_context(x, c, width=4, input_name="from_x", use_context=True, merge="concat")
    >>> x, c = jnp.ones((2, 3)), jnp.ones((2, 5))
    >>> Join().apply(Join().init(jax.random.key(0), x, c), x, c).shape
    (2, 8)
  """
  from_c = nn.Dense(width, name="from_c")(c) if use_context else None
  return join_context(nn.Dense(width, name=input_name)(inputs), from_c, merge)


class ContextPosterior(nn.Module):
  """q(c | D): per-element Dense (ELU, or none for the VHE), mean over the set, Dense to 2C.

  Input (..., N, D); output a Gaussian of batch shape (...,), event (C,).

  Examples:
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

  Examples:
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
    h = embed_with_context(x, c, width=self.width, input_name="from_x", use_context=self.use_context,
                           merge=self.context_merge)
    h = nn.elu(nn.Dense(self.width)(h))
    return gaussian_from_params(nn.Dense(2 * self.latent_dim)(h))


class LatentPrior(Encoder):
  """p(z | c): C -> 400 -> 400 -> 2Z with ELU (an `Encoder` of c).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> p_z = networks.LatentPrior((8,), latent_dim=2)
    >>> c = jnp.ones((4, 3))
    >>> p_z.apply(p_z.init(jax.random.key(0), c), c).mean.shape
    (4, 2)
  """

  activation: Activation = nn.elu


class StatisticianDecoder(nn.Module):
  """p(x | z, c): [z -> 400, c -> 400] joined (`join_context`: summed then ELU, or ELU of each concatenated), -> 4096,
  ELU, -> output logits.

  `use_context=False` drops c -> 400: the decoder is p(x | z), c ignored (an ablation, in neither paper).

  Examples:
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
    h = embed_with_context(z, c, width=self.width, input_name="from_z", use_context=self.use_context,
                           merge=self.context_merge)
    h = nn.elu(nn.Dense(self.wide)(h))
    return nn.Dense(self.output_dim)(h)
