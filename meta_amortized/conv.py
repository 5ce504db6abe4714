"""Image models whose encoders share one conv trunk with batch norm (Small NORB; REFERENCE.md section 4).

`ConvModel` wraps a MetaVAE or an NS / VHE whose encoder networks act on trunk features and whose
decoders output images (`ConvDecoder`, `ConvContextDecoder`). Every image of a step (queries, set
elements, VampPrior pseudo-images) goes through the trunk in one batch, so batch norm sees the whole
step; its running averages are the model state threaded through the train step
(`make_train_step(..., stateful=True)`) and are what the codes use at evaluation. The bound itself is
the wrapped model's, computed on the features (`encoder_inputs`).

Parameters are the wrapped model's plus `"trunk"`; the model state is `{"trunk": batch statistics}`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meta_amortized.metavae import MetaVAE
from meta_amortized.networks import ConvEncoder
from meta_amortized.sampling import as_float, sample_meta_batch
from meta_amortized.statistician import ContextLatentModel


class ConvModel(NamedTuple):
  """A MetaVAE or NS / VHE (`model`) whose encoders read the features of a batch-norm conv `trunk`.

  Example:
    >>> model = ConvModel(ConvEncoder(), MetaVAE(...))
    >>> params, model_state = model.init(key, num_distributions=2)
    >>> step = make_train_step(partial(model.loss, batch_size=100, set_size=10), optax.adam(1e-3), stateful=True)
  """

  trunk: ConvEncoder
  model: MetaVAE | ContextLatentModel

  def init(self, key: jax.Array, num_distributions: int,
           image_shape: tuple[int, int, int] = (32, 32, 1)) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, model_state) for `num_distributions` training distributions (decoders, for the MetaVAE)."""
    trunk_key, model_key = jax.random.split(key)
    variables = self.trunk.init(trunk_key, jnp.zeros((1, *image_shape)), train=False)
    features = jax.eval_shape(lambda v: self.trunk.apply(v, jnp.zeros((1, *image_shape)), train=False),
                              variables).shape[-1]
    if isinstance(self.model, MetaVAE):
      params = self.model.init(model_key, num_distributions, features)
    else:
      params = self.model.init(model_key, features, observation_shape=image_shape)
    return {"trunk": variables["params"], **params}, {"trunk": variables["batch_stats"]}

  def features(self, params: dict[str, Any], model_state: dict[str, Any], *images: jax.Array,
               train: bool) -> tuple[list[jax.Array], dict[str, Any]]:
    """Trunk features (..., F) of each image array (..., H, W, C), all in one batch, and the model state
    (with the batch statistics updated when `train`; running averages used otherwise)."""
    variables = {"params": params["trunk"], "batch_stats": model_state["trunk"]}
    flat = jnp.concatenate([x.reshape((-1,) + x.shape[-3:]) for x in images])
    if train:
      out, updates = self.trunk.apply(variables, flat, train=True, mutable=["batch_stats"])
      model_state = {"trunk": updates["batch_stats"]}
    else:
      out = self.trunk.apply(variables, flat, train=False)
    pieces = jnp.split(out, np.cumsum([math.prod(x.shape[:-3]) for x in images])[:-1].tolist())
    return [p.reshape(x.shape[:-3] + (-1,)) for p, x in zip(pieces, images, strict=True)], model_state

  def bound(self, params: dict[str, Any], model_state: dict[str, Any], key: jax.Array, queries: jax.Array,
            sets: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, Any]]:
    """The wrapped model's bound per query, (K, B), of image queries (K, B, H, W, C) and sets
    (K, B, N, H, W, C), and the model state."""
    if isinstance(self.model, MetaVAE):
      (query_inputs, set_inputs), model_state = self.features(params, model_state, queries, sets, train=train)
      return self.model.meta_elbo(params, key, queries, sets, encoder_inputs=(query_inputs, set_inputs)), model_state
    images = [queries]
    if self.model.kind == "vhe":
      images.append(sets)
    if self.model.num_pseudo_sets:
      images.append(self.model.pseudo_inputs(params))
    inputs, model_state = self.features(params, model_state, *images, train=train)
    set_inputs = inputs[1] if self.model.kind == "vhe" else None
    pseudo_inputs = inputs[-1] if self.model.num_pseudo_sets else None
    bound = self.model.per_element_bound(params, key, queries, sets, encoder_inputs=(inputs[0], set_inputs),
                                         pseudo_inputs=pseudo_inputs)
    return bound, model_state

  def loss(self, params: dict[str, Any], model_state: dict[str, Any], key: jax.Array, data: jax.Array, *,
           batch_size: int, set_size: int) -> tuple[jax.Array, tuple[dict[str, jax.Array], dict[str, Any]]]:
    """Negative mean bound of one batch drawn on the device from data (K, M, H, W, C), in the stateful form
    of `make_train_step`: (loss, (metrics, model_state))."""
    batch_key, bound_key = jax.random.split(key)
    queries, sets = sample_meta_batch(batch_key, data, batch_size=batch_size, set_size=set_size)
    bound, model_state = self.bound(params, model_state, bound_key, as_float(queries),
                                    as_float(sets), train=True)
    name = "meta_elbo" if isinstance(self.model, MetaVAE) else "bound"
    return -jnp.mean(bound), ({name: jnp.mean(bound)}, model_state)

  def encode(self, params: dict[str, Any], model_state: dict[str, Any], key: jax.Array, sets: jax.Array,
             queries: jax.Array) -> jax.Array:
    """The wrapped model's codes of image queries (B, H, W, C) with sets (B, N, H, W, C) or (N, H, W, C),
    the trunk in evaluation mode (running averages)."""
    (set_inputs, query_inputs), _ = self.features(params, model_state, sets, queries, train=False)
    return self.model.encode(params, key, set_inputs, query_inputs)

