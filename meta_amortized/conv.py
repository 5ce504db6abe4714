"""Image models whose encoders share one conv trunk with batch norm (Small NORB; docs/design.md, "Small NORB").

`ConvModel` wraps any model of the package whose encoders act on trunk features and whose decoders output images
(`networks.ConvDecoder`, `networks.ConvContextDecoder`). Every image the wrapped model's encoders read (its
`encoder_images`: queries, set elements, VampPrior pseudo-images) goes through the trunk in one batch, so batch
norm sees the whole step; its running averages are the model state (`{"trunk": batch statistics}`), updated by
`loss` and used by `encode`. The bound itself is the wrapped model's, computed on the features.

Parameters are the wrapped model's plus `"trunk"`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from meta_amortized.metavae import MetaVAE
from meta_amortized.networks import ConvEncoder
from meta_amortized.sampling import as_float, sample_meta_batch
from meta_amortized.statistician import NeuralStatistician, VariationalHomoencoder

__all__ = ["ConvModel"]

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ConvModel:
  """A MetaVAE, NS or VHE (`model`) whose encoders read the features of a batch-norm conv `trunk`.

  Examples:
    >>> import jax
    >>> from meta_amortized.conv import ConvModel
    >>> from meta_amortized.metavae import MetaVAE
    >>> from meta_amortized.networks import ConvDecoder, ConvEncoder, MetaInferenceNetwork
    >>> widths = (2, 2, 2, 4, 4, 4, 4, 4, 4)
    >>> model = ConvModel(ConvEncoder(widths), MetaVAE(MetaInferenceNetwork((8,), (8,), 2), ConvDecoder(widths)))
    >>> params, state = model.init(jax.random.key(0), num_distributions=2)
    >>> images = jax.random.uniform(jax.random.key(1), (2, 12, 32, 32, 1))   # K = 2 distributions of 12 images
    >>> loss, (metrics, state) = model.loss(params, state, jax.random.key(2), images, batch_size=3, set_size=2)
    >>> sorted(state)
    ['trunk']
  """

  trunk: ConvEncoder
  model: MetaVAE | NeuralStatistician | VariationalHomoencoder

  def init(self, key: jax.Array, num_distributions: int,
           observation_shape: tuple[int, int, int] = (32, 32, 1)) -> tuple[Params, dict[str, Any]]:
    """(params, state) for `num_distributions` training distributions of images of `observation_shape`."""
    trunk_key, model_key = jax.random.split(key)
    image = jnp.zeros((1, *observation_shape))
    variables = self.trunk.init(trunk_key, image, train=False)
    features = jax.eval_shape(lambda v: self.trunk.apply(v, image, train=False), variables).shape[-1]
    params = self.model.init_params(model_key, num_distributions, features, tuple(observation_shape))
    return {"trunk": variables["params"], **params}, {"trunk": variables["batch_stats"]}

  def features(self, params: Params, state: dict[str, Any], *images: jax.Array,
               train: bool) -> tuple[list[jax.Array], dict[str, Any]]:
    """Trunk features (..., F) of each image array (..., H, W, C), all in one batch, and the state
    (with the batch statistics updated when `train`; running averages used otherwise)."""
    variables = {"params": params["trunk"], "batch_stats": state["trunk"]}
    flat = jnp.concatenate([x.reshape((-1,) + x.shape[-3:]) for x in images])
    if train:
      out, updates = self.trunk.apply(variables, flat, train=True, mutable=["batch_stats"])
      state = {"trunk": updates["batch_stats"]}
    else:
      out = self.trunk.apply(variables, flat, train=False)
    pieces = jnp.split(out, np.cumsum([math.prod(x.shape[:-3]) for x in images])[:-1].tolist())
    return [p.reshape(x.shape[:-3] + (-1,)) for p, x in zip(pieces, images, strict=True)], state

  def bound(self, params: Params, state: dict[str, Any], key: jax.Array, queries: jax.Array,
            sets: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, Any]]:
    """The wrapped model's bound per query, (K, B), of image queries (K, B, H, W, C) and sets
    (K, B, N, H, W, C), and the state."""
    inputs, state = self.features(params, state, *self.model.encoder_images(params, queries, sets), train=train)
    return self.model.bound(params, key, queries, sets, encoder_inputs=tuple(inputs)), state

  def loss(self, params: Params, state: dict[str, Any], key: jax.Array, data: jax.Array, *,
           batch_size: int, set_size: int) -> tuple[jax.Array, tuple[dict[str, jax.Array], dict[str, Any]]]:
    """Negative mean bound of one batch drawn on the device from data (K, M, H, W, C), and the new state."""
    batch_key, bound_key = jax.random.split(key)
    queries, sets = sample_meta_batch(batch_key, data, batch_size=batch_size, set_size=set_size)
    bound, state = self.bound(params, state, bound_key, as_float(queries), as_float(sets), train=True)
    return -jnp.mean(bound), ({self.model.bound_name: jnp.mean(bound)}, state)

  def encode(self, params: Params, state: dict[str, Any], key: jax.Array, sets: jax.Array,
             queries: jax.Array) -> jax.Array:
    """The wrapped model's codes of image queries (B, H, W, C) with sets (B, N, H, W, C) or (N, H, W, C),
    the trunk in evaluation mode (running averages)."""
    (set_inputs, query_inputs), _ = self.features(params, state, sets, queries, train=False)
    return self.model.encode(params, {}, key, set_inputs, query_inputs)
