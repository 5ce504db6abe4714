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
the decoder on the final -ELBO_T (`iterative_gradients`).

The same encoder with a `context` (a dataset summary h(D)) is an iterative
meta-inference network: `iterative_meta_inference` refines q(z | D, x) for a batch of
distributions, each with its own decoder's gradients (not in either paper).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from meta_amortized.distributions import DiagonalGaussian
from meta_amortized.networks import MLP
from meta_amortized.objectives import check_meta_batch, elbo, select_decoders

LOG_VARIANCE_BOUND = 15.0
GradientEncoding = Literal["log_sign", "standardize", "none"]


class Update(NamedTuple):
  """An iterative encoder's output: proposals and gate logits for mean and log-variance."""

  mean: jax.Array
  log_variance: jax.Array
  mean_gate: jax.Array
  log_variance_gate: jax.Array


class IterativeResult(NamedTuple):
  """Every step's posterior (stacked, leading axis T + 1) and ELBO, shape (T + 1, B)."""

  posteriors: DiagonalGaussian
  elbos: jax.Array


def encode_gradients(gradients: jax.Array, *, method: GradientEncoding = "log_sign") -> jax.Array:
  """Preprocesses per-example gradients (B, Z) for the encoder's input.

  "log_sign": [log(|g| + 1e-5), sign(g)] (2Z features), Marino et al.'s MNIST choice;
  "standardize": g standardised per example over its Z entries (Z features);
  "none": g itself.
  """
  if method == "log_sign":
    return jnp.concatenate([jnp.log(jnp.abs(gradients) + 1e-5), jnp.sign(gradients)], axis=-1)
  if method == "standardize":
    mean = jnp.mean(gradients, axis=-1, keepdims=True)
    std = jnp.std(gradients, axis=-1, keepdims=True)
    return (gradients - mean) / (std + 1e-5)
  if method == "none":
    return gradients
  raise ValueError(f"unknown gradient encoding {method!r}; expected 'log_sign', 'standardize' or 'none'")


def gated_update(old: DiagonalGaussian, update: Update, *, stop_gradient: bool = True) -> DiagonalGaussian:
  """new = g * old + (1 - g) * delta per dimension, g = sigmoid(gate); log-variance clamped.

  With `stop_gradient` (the paper's choice) no gradient flows into earlier steps
  through `old`; without it, the encoder loss backpropagates through all steps.
  """
  if stop_gradient:
    old = jax.tree.map(jax.lax.stop_gradient, old)
  mean_gate = jax.nn.sigmoid(update.mean_gate)
  log_variance_gate = jax.nn.sigmoid(update.log_variance_gate)
  mean = mean_gate * old.mean + (1.0 - mean_gate) * update.mean
  log_variance = log_variance_gate * old.log_variance + (1.0 - log_variance_gate) * update.log_variance
  return DiagonalGaussian(mean, jnp.clip(log_variance, -LOG_VARIANCE_BOUND, LOG_VARIANCE_BOUND), old.event_ndims)


class IterativeEncoder(nn.Module):
  """The iterative inference model: MLP on [x, mean, log-variance, signal, context] -> `Update`.

  Attributes:
    hidden: widths of the hidden layers (2 x 512 ELU on MNIST).
    latent_dim: Z.
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
    encoder_fn: (x, posterior, signal features) -> `Update`; e.g. an `IterativeEncoder`'s
      apply, with a dataset summary closed over for iterative meta-inference.
    log_likelihood_fn: z (B, Z) -> log p(x | z) (B,).
    num_steps: T.
    latent_dim: Z.
    signal: "gradient" encodes d ELBO / d (mean, log-variance) per example;
      "error" encodes eps_x = x - E[x | z] and eps_z = (z - mu_p) / var_p.
    observation_mean_fn: z -> E[x | z], needed for signal="error".
    gradient_encoding: see `encode_gradients`.
    prior: p(z), a diagonal Gaussian of shape (B, Z); N(0, I) when None. It is also the
      starting posterior.
    num_samples: reparameterised samples per ELBO (and per signal).
    backprop_through_steps: let the encoder loss backpropagate through earlier steps.

  Returns:
    `IterativeResult` with posteriors of shape (T + 1, B, Z) (step 0 is the prior)
    and ELBOs of shape (T + 1, B). The signals are constants (stop-gradient).

  Example:
    >>> result = iterative_inference(key, x, encoder_fn=lambda x, q, s: encoder.apply(params, x, q, s),
    ...                              log_likelihood_fn=lambda z: Bernoulli(decode(z)).log_prob(x),
    ...                              num_steps=5, latent_dim=64)
    >>> final_posterior = jax.tree.map(lambda a: a[-1], result.posteriors)
  """
  if signal not in ("gradient", "error"):
    raise ValueError(f"unknown signal {signal!r}; expected 'gradient' or 'error'")
  if signal == "error" and observation_mean_fn is None:
    raise ValueError("signal='error' needs observation_mean_fn (z -> E[x | z])")
  if prior is None:
    zeros = jnp.zeros(x.shape[:-1] + (latent_dim,), x.dtype)
    prior = DiagonalGaussian(zeros, zeros)

  def bound(step_key, posterior):
    return elbo(step_key, posterior, log_likelihood_fn, prior, num_samples=num_samples)

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
    log_likelihood_fn: Callable[[Any, jax.Array, jax.Array], jax.Array],
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
    encoder_fn: (x (B, D), posterior, gradient features, h(D_i)) -> `Update`, e.g. an `IterativeEncoder`'s apply.
    log_likelihood_fn: (theta_i, x_i, z) -> log p_theta_i(x_i | z), shape (B,).
    decoder_params: the decoders stacked on a leading axis.
    num_steps: T.
    latent_dim: Z.
    decoder_index: (K,) int, the decoder of each distribution; `arange(K)` when None (an unseen distribution
      has no decoder of its own: the caller chooses one).
    gradient_encoding: see `encode_gradients`.
    num_samples: reparameterised samples per ELBO and per gradient.

  Returns:
    `IterativeResult` with posteriors (T + 1, K, B, Z) and MetaELBOs (T + 1, K, B), step 0 the prior;
    `iterative_losses` of the ELBOs gives the encoder's and the decoders' losses.

  Example:
    >>> result = iterative_meta_inference(key, x, d, summary_fn=h, encoder_fn=f, log_likelihood_fn=ll,
    ...                                   decoder_params=stacked, num_steps=5, latent_dim=40)
    >>> encoder_loss, decoder_loss = iterative_losses(result.elbos)
  """
  check_meta_batch(queries, sets)
  thetas = select_decoders(decoder_params, decoder_index, queries.shape[0])

  def one_distribution(dist_key, theta, x, d):
    context = summary_fn(d)
    return iterative_inference(dist_key, x, encoder_fn=lambda x, q, s: encoder_fn(x, q, s, context),
                               log_likelihood_fn=lambda z: log_likelihood_fn(theta, x, z), num_steps=num_steps,
                               latent_dim=latent_dim, gradient_encoding=gradient_encoding, num_samples=num_samples)

  keys = jax.random.split(key, queries.shape[0])
  result = jax.vmap(one_distribution)(keys, thetas, queries, sets)
  return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), result)  # steps first, as `iterative_inference`


def iterative_losses(elbos: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(encoder loss, decoder loss) from ELBOs (T + 1, ...): mean_t>=1 of -ELBO_t, and -ELBO_T."""
  return -jnp.mean(elbos[1:]), -jnp.mean(elbos[-1])


def iterative_gradients(elbos_fn: Callable[[Any, Any], jax.Array], encoder_params: Any,
                        decoder_params: Any) -> tuple[tuple[jax.Array, jax.Array], tuple[Any, Any]]:
  """Gradients of the two training losses of an iterative inference model, in one forward pass.

  Args:
    elbos_fn: (encoder_params, decoder_params) -> ELBOs (T + 1, B), e.g. a closure around
      `iterative_inference(...).elbos`.
    encoder_params, decoder_params: the two parameter pytrees.

  Returns:
    ((encoder_loss, decoder_loss), (encoder_grads, decoder_grads)): the encoder's gradient is
    that of the mean over steps of -ELBO_t, the decoder's that of the final -ELBO_T.

  Example:
    >>> elbos_fn = lambda enc, dec: iterative_inference(key, x, encoder_fn=partial(encoder.apply, enc),
    ...     log_likelihood_fn=lambda z: Bernoulli(decoder.apply(dec, z)).log_prob(x), num_steps=5,
    ...     latent_dim=64).elbos
    >>> (encoder_loss, decoder_loss), (encoder_grads, decoder_grads) = iterative_gradients(elbos_fn, enc, dec)
  """
  elbos, pullback = jax.vjp(elbos_fn, encoder_params, decoder_params)
  losses, loss_pullback = jax.vjp(iterative_losses, elbos)
  one, zero = jnp.ones_like(losses[0]), jnp.zeros_like(losses[0])
  (encoder_cotangent,) = loss_pullback((one, zero))
  (decoder_cotangent,) = loss_pullback((zero, one))
  encoder_grads, _ = pullback(encoder_cotangent)
  _, decoder_grads = pullback(decoder_cotangent)
  return losses, (encoder_grads, decoder_grads)
