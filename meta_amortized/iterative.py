"""Iterative amortized inference (Marino, Yue & Mandt 2018) as pure functions.

An iterative encoder refines q(z | x) over T steps. At each step it sees x, the
current posterior parameters (mean, log-variance) and a signal: either the
per-example ELBO gradients with respect to those parameters (eq. 5-7 there;
computed with `jax.grad` and treated as constants) or the errors
eps_x = x - E[x | z] and eps_z = (z - mu_p) / var_p (eq. 10-11). Its output is a
gated ("highway") update per dimension,
    new = g * stop_gradient(old) + (1 - g) * delta,   g = sigmoid(gate logits),
with the log-variance clamped to [-15, 15]. Starting from the prior N(0, I),
`iterative_inference` runs T steps in a `jax.lax.scan` and returns every step's
posterior and ELBO. The encoder is trained on the mean over steps of -ELBO_t and
the decoder on the final -ELBO_T (`iterative_loss`, one differentiable scalar).

The same encoder with a `context` (a dataset summary h(D)) is an iterative
meta-inference network: `iterative_meta_inference` refines q(z | D, x) for a batch of
distributions, each with its own decoder's gradients (not in either paper).

Only JAX is needed here: the encoder is any callable returning an `Update` (the Flax
`networks.IterativeEncoder` is one).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from meta_amortized.distributions import DiagonalGaussian
from meta_amortized.objectives import _check_count, _check_meta_batch, _nan_where_invalid, _select_decoders, elbo

__all__ = [
    "LOG_VARIANCE_BOUND",
    "EncoderFn",
    "GRADIENT_ENCODINGS",
    "GradientEncoding",
    "IterativeResult",
    "Update",
    "encode_gradients",
    "gated_update",
    "iterative_inference",
    "iterative_loss",
    "iterative_losses",
    "iterative_meta_inference",
]

LOG_VARIANCE_BOUND = 15.0
GradientEncoding = Literal["log_sign", "standardize", "none"]
GRADIENT_ENCODINGS = ("log_sign", "standardize", "none")


def _check_encoding(method: str) -> None:
  if method not in GRADIENT_ENCODINGS:
    raise ValueError(f"unknown gradient encoding {method!r}; expected 'log_sign', 'standardize' or 'none'")


class Update(NamedTuple):
  """An iterative encoder's output: proposals and gate logits for mean and log-variance.

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.iterative import Update
    >>> update = Update(*jnp.split(jnp.zeros((4, 8)), 4, axis=-1))    # from an encoder's (B, 4Z) output, Z = 2
    >>> update.mean.shape
    (4, 2)
  """

  mean: jax.Array
  log_variance: jax.Array
  mean_gate: jax.Array
  log_variance_gate: jax.Array


class IterativeResult(NamedTuple):
  """Every step's posterior (stacked, leading axis T + 1) and ELBO, shape (T + 1, B).

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.distributions import DiagonalGaussian
    >>> from meta_amortized.iterative import IterativeResult
    >>> result = IterativeResult(DiagonalGaussian(jnp.zeros((3, 4, 2)), jnp.zeros((3, 4, 2))), jnp.zeros((3, 4)))
    >>> result.posteriors.mean[-1].shape                               # the final posterior, after T = 2 steps
    (4, 2)
  """

  posteriors: DiagonalGaussian
  elbos: jax.Array


def encode_gradients(gradients: jax.Array, *, method: GradientEncoding = "log_sign") -> jax.Array:
  """Preprocesses per-example gradients (B, Z) for the encoder's input.

  "log_sign": [log(|g| + 1e-5), sign(g)] (2Z features), Marino et al.'s MNIST choice;
  "standardize": g standardised per example over its Z entries (Z features);
  "none": g itself.

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.iterative import encode_gradients
    >>> encode_gradients(jnp.array([[-2.0, 0.5]])).shape               # [log |g|, sign g]
    (1, 4)
  """
  _check_encoding(method)
  if method == "log_sign":
    return jnp.concatenate([jnp.log(jnp.abs(gradients) + 1e-5), jnp.sign(gradients)], axis=-1)
  if method == "standardize":
    mean = jnp.mean(gradients, axis=-1, keepdims=True)
    std = jnp.std(gradients, axis=-1, keepdims=True)
    return (gradients - mean) / (std + 1e-5)
  return gradients  # "none"


def gated_update(old: DiagonalGaussian, update: Update, *, stop_gradient: bool = True) -> DiagonalGaussian:
  """new = g * old + (1 - g) * delta per dimension, g = sigmoid(gate); log-variance clamped.

  With `stop_gradient` (the paper's choice) no gradient flows into earlier steps
  through `old`; without it, the encoder loss backpropagates through all steps.

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.distributions import DiagonalGaussian
    >>> from meta_amortized.iterative import Update, gated_update
    >>> old = DiagonalGaussian(jnp.zeros(2), jnp.zeros(2))
    >>> update = Update(jnp.ones(2), jnp.full(2, 100.0), jnp.zeros(2), jnp.zeros(2))  # gates sigmoid(0) = 1/2
    >>> new = gated_update(old, update)
    >>> new.mean.tolist(), new.log_variance.tolist()                   # the log-variance is clamped to 15
    ([0.5, 0.5], [15.0, 15.0])
  """
  if stop_gradient:
    old = jax.tree.map(jax.lax.stop_gradient, old)
  mean_gate = jax.nn.sigmoid(update.mean_gate)
  log_variance_gate = jax.nn.sigmoid(update.log_variance_gate)
  mean = mean_gate * old.mean + (1.0 - mean_gate) * update.mean
  log_variance = log_variance_gate * old.log_variance + (1.0 - log_variance_gate) * update.log_variance
  return DiagonalGaussian(mean, jnp.clip(log_variance, -LOG_VARIANCE_BOUND, LOG_VARIANCE_BOUND), old.event_ndims)


EncoderFn = Callable[[jax.Array, DiagonalGaussian, jax.Array], Update]


def iterative_inference(
    key: jax.Array,
    x: jax.Array,
    *,
    encoder_fn: EncoderFn,
    log_likelihood_fn: Callable[[jax.Array], jax.Array],
    num_steps: int,
    latent_dim: int,
    signal: Literal["gradient", "error"] = "gradient",
    observation_mean_fn: Callable[[jax.Array], jax.Array] | None = None,
    gradient_encoding: GradientEncoding = "log_sign",
    prior: DiagonalGaussian | None = None,
    num_samples: int = 1,
    backprop_through_steps: bool = False,
) -> IterativeResult:
  """Runs T steps of iterative amortized inference from the prior (Marino et al. eq. 5).

  Args:
    key: PRNG key.
    x: (B, D) observations.
    encoder_fn: (x, posterior, signal features) -> `Update`; e.g. a `networks.IterativeEncoder`'s
      apply, with a dataset summary closed over for iterative meta-inference.
    log_likelihood_fn: z (B, Z) -> log p(x | z) (B,).
    num_steps: T >= 1.
    latent_dim: Z >= 1.
    signal: "gradient" encodes d ELBO / d (mean, log-variance) per example;
      "error" encodes eps_x = x - E[x | z] and eps_z = (z - mu_p) / var_p.
    observation_mean_fn: z -> E[x | z], needed for signal="error".
    gradient_encoding: see `encode_gradients`.
    prior: p(z), a diagonal Gaussian of shape (B, Z); N(0, I) when None. It is also the
      starting posterior.
    num_samples: reparameterised samples per ELBO (and per signal), >= 1.
    backprop_through_steps: let the encoder loss backpropagate through earlier steps (the
      paper stops the gradient at each step's input posterior; this option trains the
      encoder through the whole chain of refinements).

  Returns:
    `IterativeResult` with posteriors of shape (T + 1, B, Z) (step 0 is the prior)
    and ELBOs of shape (T + 1, B). The signals are constants (stop-gradient).

  Raises:
    ValueError: an unknown signal or encoding, a missing observation_mean_fn, counts < 1, a prior of another shape.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized.distributions import Bernoulli
    >>> from meta_amortized.iterative import Update, iterative_inference
    >>> x = jnp.ones((4, 6))
    >>> encoder = lambda x, q, signal: Update(q.mean + 0.1, q.log_variance, jnp.zeros((4, 2)), jnp.zeros((4, 2)))
    >>> result = iterative_inference(jax.random.key(0), x, encoder_fn=encoder,
    ...                              log_likelihood_fn=lambda z: Bernoulli(jnp.tile(z, 3)).log_prob(x),
    ...                              num_steps=5, latent_dim=2)
    >>> result.posteriors.mean.shape, result.elbos.shape              # step 0 is the prior
    ((6, 4, 2), (6, 4))
  """
  _check_count("num_steps", num_steps)
  _check_count("latent_dim", latent_dim)
  _check_count("num_samples", num_samples)
  if signal not in ("gradient", "error"):
    raise ValueError(f"unknown signal {signal!r}; expected 'gradient' or 'error'")
  if signal == "error" and observation_mean_fn is None:
    raise ValueError("signal='error' needs observation_mean_fn (z -> E[x | z])")
  _check_encoding(gradient_encoding)
  if prior is None:
    zeros = jnp.zeros(x.shape[:-1] + (latent_dim,), x.dtype)
    prior = DiagonalGaussian(zeros, zeros)
  elif jnp.shape(prior.mean) != x.shape[:-1] + (latent_dim,):
    raise ValueError(f"prior has shape {jnp.shape(prior.mean)}; expected {x.shape[:-1] + (latent_dim,)} "
                     f"(x of shape {x.shape}, latent_dim={latent_dim})")

  def bound(step_key, posterior):
    return elbo(step_key, posterior, log_likelihood_fn, prior=prior, num_samples=num_samples)

  def bound_and_signal(step_key, posterior):
    if signal == "gradient":
      # Per-example gradients: each example's ELBO depends on its own parameters only,
      # so the gradient of the batch sum holds them all. The ELBO itself stays
      # differentiable for the losses; the gradients enter the encoder as constants.
      def total(q):
        per_example = bound(step_key, q)
        return jnp.sum(per_example), per_example

      (_, value), grads = jax.value_and_grad(total, has_aux=True)(posterior)
      grads = jax.lax.stop_gradient(grads)
      features = jnp.concatenate([encode_gradients(grads.mean, method=gradient_encoding),
                                  encode_gradients(grads.log_variance, method=gradient_encoding)], axis=-1)
      return value, features
    elbo_key, error_key = jax.random.split(step_key)
    z = posterior.sample(error_key, (num_samples,))
    eps_x = jnp.mean(x - jax.vmap(observation_mean_fn)(z), axis=0)
    eps_z = jnp.mean((z - prior.mean) * jnp.exp(-prior.log_variance), axis=0)
    return bound(elbo_key, posterior), jax.lax.stop_gradient(jnp.concatenate([eps_x, eps_z], axis=-1))

  def refine(posterior, step_key):
    value, features = bound_and_signal(step_key, posterior)
    new = gated_update(posterior, encoder_fn(x, posterior, features),
                       stop_gradient=not backprop_through_steps)
    return new, (posterior, value)

  step_keys = jax.random.split(key, num_steps + 1)
  final, (posteriors, values) = jax.lax.scan(refine, prior, step_keys[:-1])
  posteriors = jax.tree.map(lambda history, last: jnp.concatenate([history, last[None]]), posteriors, final)
  elbos = jnp.concatenate([values, bound(step_keys[-1], final)[None]])
  return IterativeResult(posteriors, elbos)


def iterative_meta_inference(
    key: jax.Array,
    queries: jax.Array,
    sets: Any,
    *,
    summary_fn: Callable[[Any], jax.Array],
    encoder_fn: Callable[[jax.Array, DiagonalGaussian, jax.Array, jax.Array], Update],
    decoder_log_likelihood_fn: Callable[[Any, jax.Array, jax.Array], jax.Array],
    decoder_params: Any,
    num_steps: int,
    latent_dim: int,
    decoder_index: jax.Array | None = None,
    gradient_encoding: GradientEncoding = "log_sign",
    num_samples: int = 1,
) -> IterativeResult:
  """Iterative meta-inference: the MetaELBO (Wu et al. eq. 11) with q(z | D_i, x) refined T times from the prior
  by an encoder that sees x, h(D_i), the posterior and the gradients of distribution i's own ELBO.

  Args:
    key: PRNG key; distribution i uses `jax.random.split(key, K)[i]`.
    queries: (K, B, D): B queries from each of K distributions.
    sets: pytree with leading axis K: the sample sets D_i, e.g. (K, B, N, D), one set per query.
    summary_fn: `sets[i]` -> h(D_i), (B, S) or (S,).
    encoder_fn: (x (B, D), posterior, gradient features, h(D_i)) -> `Update`, e.g. a
      `networks.IterativeEncoder`'s apply.
    decoder_log_likelihood_fn: (theta_i, x_i, z) -> log p_theta_i(x_i | z), shape (B,).
    decoder_params: the decoders stacked on a leading axis.
    num_steps: T >= 1.
    latent_dim: Z >= 1.
    decoder_index: (K,) integers, the decoder of each distribution; `arange(K)` when None (an unseen distribution
      has no decoder of its own: the caller chooses one). As in `objectives.meta_elbo`, a concrete index out of
      range is a ValueError and a traced one makes that distribution's values NaN.
    gradient_encoding: see `encode_gradients`.
    num_samples: reparameterised samples per ELBO and per gradient, >= 1.

  Returns:
    `IterativeResult` with posteriors (T + 1, K, B, Z) and MetaELBOs (T + 1, K, B), step 0 the prior;
    `iterative_loss` trains the encoder and the decoders on them.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized.distributions import Bernoulli
    >>> from meta_amortized.iterative import Update, iterative_meta_inference
    >>> K, B, N, D, Z = 3, 4, 5, 6, 2
    >>> queries, sets = jnp.ones((K, B, D)), jnp.ones((K, B, N, D))
    >>> encoder = lambda x, q, signal, h: Update(q.mean + h[:, :Z], q.log_variance, q.mean, q.mean)
    >>> result = iterative_meta_inference(
    ...     jax.random.key(0), queries, sets, summary_fn=lambda d: jnp.mean(d, -2), encoder_fn=encoder,
    ...     decoder_log_likelihood_fn=lambda theta, x, z: Bernoulli(z @ theta).log_prob(x),
    ...     decoder_params=jnp.zeros((K, Z, D)), num_steps=3, latent_dim=Z)
    >>> result.elbos.shape                                             # (T + 1, K, B)
    (4, 3, 4)
  """
  _check_meta_batch(queries, sets)
  thetas, valid = _select_decoders(decoder_params, decoder_index, queries.shape[0])

  def one_distribution(dist_key, theta, x, d):
    context = summary_fn(d)
    return iterative_inference(dist_key, x, encoder_fn=lambda x, q, s: encoder_fn(x, q, s, context),
                               log_likelihood_fn=lambda z: decoder_log_likelihood_fn(theta, x, z),
                               num_steps=num_steps, latent_dim=latent_dim, gradient_encoding=gradient_encoding,
                               num_samples=num_samples)

  keys = jax.random.split(key, queries.shape[0])
  result = jax.tree.map(lambda a: _nan_where_invalid(a, valid), jax.vmap(one_distribution)(keys, thetas, queries,
                                                                                            sets))
  return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), result)  # steps first, as `iterative_inference`


def iterative_losses(elbos: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(encoder loss, decoder loss) from ELBOs (T + 1, ...): mean_t>=1 of -ELBO_t, and -ELBO_T.

  Examples:
    >>> import jax.numpy as jnp
    >>> from meta_amortized.iterative import iterative_losses
    >>> [float(loss) for loss in iterative_losses(jnp.array([[-9.0], [-5.0], [-3.0]]))]  # steps 0, 1, 2
    [4.0, 3.0]
  """
  return -jnp.mean(elbos[1:]), -jnp.mean(elbos[-1])


def iterative_loss(elbos_fn: Callable[[Any, Any], jax.Array], encoder_params: Any,
                   decoder_params: Any) -> tuple[jax.Array, jax.Array]:
  """The training loss of an iterative inference model, in one forward pass: (decoder loss, encoder loss).

  The value is -ELBO_T (the final step's), differentiable as one scalar whose gradient is routed by parameter
  group: the encoder's gradient is that of the mean over steps of -ELBO_t (Marino et al.), the decoder's that of
  -ELBO_T. So `jax.grad` of the first output trains both parts of the model as the paper does, and any training
  step built on `jax.value_and_grad` serves. The second output, the encoder loss, is a metric (no gradient).

  Args:
    elbos_fn: (encoder_params, decoder_params) -> ELBOs (T + 1, ...), e.g. a closure around
      `iterative_inference(...).elbos`.
    encoder_params: the encoder's parameter pytree.
    decoder_params: the decoder's parameter pytree.

  Returns:
    (decoder_loss, encoder_loss), two scalars.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from meta_amortized.iterative import iterative_loss
    >>> elbos_fn = lambda enc, dec: jnp.stack([-enc * jnp.arange(3.0), -dec * jnp.ones(3)]).T  # (T + 1 = 3, 2)
    >>> grads = jax.grad(lambda enc, dec: iterative_loss(elbos_fn, enc, dec)[0], argnums=(0, 1))(1.0, 1.0)
    >>> [float(g) for g in grads]        # encoder: d mean_t>=1 (-ELBO_t); decoder: d (-ELBO_T)
    [0.75, 0.5]
  """
  decoder_loss, encoder_loss = _routed_losses(elbos_fn, encoder_params, decoder_params)
  return decoder_loss, jax.lax.stop_gradient(encoder_loss)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _routed_losses(elbos_fn, encoder_params, decoder_params):
  encoder_loss, decoder_loss = iterative_losses(elbos_fn(encoder_params, decoder_params))
  return decoder_loss, encoder_loss


def _routed_losses_forward(elbos_fn, encoder_params, decoder_params):
  elbos, pullback = jax.vjp(elbos_fn, encoder_params, decoder_params)
  (encoder_loss, decoder_loss), loss_pullback = jax.vjp(iterative_losses, elbos)
  return (decoder_loss, encoder_loss), (pullback, loss_pullback)


def _routed_losses_backward(elbos_fn, residuals, cotangents):
  pullback, loss_pullback = residuals
  scale = cotangents[0]  # the decoder loss's: the encoder loss is returned under stop_gradient
  zero = jnp.zeros_like(scale)
  (encoder_cotangent,) = loss_pullback((scale, zero))
  (decoder_cotangent,) = loss_pullback((zero, scale))
  encoder_grads, _ = pullback(encoder_cotangent)
  _, decoder_grads = pullback(decoder_cotangent)
  return encoder_grads, decoder_grads


_routed_losses.defvjp(_routed_losses_forward, _routed_losses_backward)
