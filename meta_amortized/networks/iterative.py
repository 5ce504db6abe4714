"""The iterative inference model of Marino et al. (docs/design.md section 7)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from meta_amortized.distributions import DiagonalGaussian
from meta_amortized.iterative import Update
from meta_amortized.networks.layers import MLP, nn

__all__ = ["IterativeEncoder"]


class IterativeEncoder(nn.Module):
  """The iterative inference model: MLP on [x, mean, log-variance, signal, context] -> `iterative.Update`.

  Attributes:
    hidden: widths of the hidden layers (2 x 512 ELU on MNIST).
    latent_dim: Z.

  Examples:
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
