"""Building blocks shared by every network family: an MLP, the Gaussian head, the decoder bank's initialiser."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from meta_amortized._extras import require
from meta_amortized.distributions import DiagonalGaussian

nn = require("flax.linen", needed_by="meta_amortized.networks")

__all__ = ["MLP", "Activation", "gaussian_from_params", "init_stacked", "leaky_relu", "reinitialize_dense"]

Activation = Callable[[jax.Array], jax.Array]


def leaky_relu(x: jax.Array) -> jax.Array:
  """LeakyReLU with slope 0.2, the summary network's nonlinearity.

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.networks import leaky_relu
    >>> leaky_relu(jnp.array([-1.0, 2.0])).tolist()
    [-0.20000000298023224, 2.0]
  """
  return jax.nn.leaky_relu(x, negative_slope=0.2)


class MLP(nn.Module):
  """Dense layers with `activation` between them (and after the last if `activate_final`).

  Examples:
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


def gaussian_from_params(params: jax.Array) -> DiagonalGaussian:
  """Splits the last axis of (..., 2Z) into a mean and a log-variance, in float32 (whatever the networks'
  compute dtype: the bounds are computed in float32).

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.networks import gaussian_from_params
    >>> gaussian_from_params(jnp.zeros((3, 4))).mean.shape             # Z = 2
    (3, 2)
  """
  mean, log_variance = jnp.split(params.astype(jnp.float32), 2, axis=-1)
  return DiagonalGaussian(mean, log_variance)


def init_stacked(module: nn.Module, key: jax.Array, num: int, *example_inputs: Any) -> Any:
  """Initialises `num` independent copies of `module`, parameters stacked on axis 0.

  This is the bank of per-distribution decoders: apply it with
  `jax.vmap(module.apply)(stacked, inputs)` (one batched call for all K decoders)
  or pick decoder k with `jax.tree.map(lambda p: p[k], stacked)`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized import networks
    >>> decoder = networks.Decoder((8,), output_dim=6)
    >>> stacked = networks.init_stacked(decoder, jax.random.key(0), 4, jnp.ones((1, 2)))
    >>> jax.vmap(decoder.apply, (0, None))(stacked, jnp.ones((3, 2))).shape   # 4 decoders at once
    (4, 3, 6)
  """
  return jax.vmap(lambda k: module.init(k, *example_inputs))(jax.random.split(key, num))


def reinitialize_dense(params: Any, key: jax.Array, kernel_init: Callable[..., jax.Array]) -> Any:
  """`params` with every Dense kernel (a 2-D leaf named "kernel") drawn afresh from `kernel_init` and every bias
  zero; other leaves (such as pseudo-inputs) are kept. The original MetaVAE code's baselines use xavier_normal
  with gain sqrt(2): `nn.initializers.variance_scaling(2.0, "fan_avg", "normal")`.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from flax import linen as nn
    >>> from meta_amortized.networks import MLP, reinitialize_dense
    >>> mlp = MLP((300, 300))
    >>> params = mlp.init(jax.random.key(0), jnp.ones((1, 300)))
    >>> xavier_sqrt2 = nn.initializers.variance_scaling(2.0, "fan_avg", "normal")
    >>> xavier = reinitialize_dense(params, jax.random.key(1), xavier_sqrt2)
    >>> round(float(jnp.std(xavier["params"]["dense_0"]["kernel"])), 2)     # 2 / sqrt(300 + 300)
    0.08
  """
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(key, len(leaves))

  def fresh(path, leaf, leaf_key):
    name = getattr(path[-1], "key", None)
    if name == "kernel" and leaf.ndim == 2:
      return kernel_init(leaf_key, leaf.shape, leaf.dtype)
    return jnp.zeros_like(leaf) if name == "bias" else leaf

  return jax.tree_util.tree_unflatten(treedef, [fresh(p, x, k) for (p, x), k in zip(leaves, keys, strict=True)])
