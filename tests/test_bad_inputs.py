"""Every bad argument of the library is a ValueError (TypeError for a wrong type) naming it and its value, raised
before any value is computed: never NaN, a clamp, a wrap or a division by zero."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meta_amortized import objectives, probe
from meta_amortized.distributions import Bernoulli, DiagonalGaussian, kl_divergence
from meta_amortized.iterative import iterative_inference, iterative_meta_inference

B, Z, D, K, N = 4, 2, 6, 3, 5
Q = DiagonalGaussian(jnp.zeros((B, Z)), jnp.zeros((B, Z)))
X = jnp.ones((B, D))
LOG_LIK = lambda z: Bernoulli(jnp.tile(z, 3)).log_prob(X)


def _meta(**kwargs):
  queries, sets = jnp.ones((K, B, D)), jnp.ones((K, B, N, D))
  g = lambda d, x: DiagonalGaussian(jnp.mean(d, -2)[:, :Z] + x[:, :Z], jnp.zeros((B, Z)))
  decoders = {"w": jnp.stack([jnp.full((Z, D), float(k)) for k in range(K)])}  # decoder k: weights k
  ll = lambda theta, x, z: Bernoulli(z @ theta["w"]).log_prob(x)
  args = dict(meta_inference_fn=g, decoder_log_likelihood_fn=ll, decoder_params=decoders)
  return objectives.meta_elbo(jax.random.key(0), queries, sets, **{**args, **kwargs})


def _context_fns(x):
  return dict(
      context_posterior_fn=lambda d: DiagonalGaussian(jnp.mean(d, -2)[..., :3], jnp.zeros(d.shape[:-2] + (3,))),
      latent_posterior_fn=lambda xs, c: DiagonalGaussian(xs[..., :Z] + c[..., :Z], jnp.zeros(xs.shape[:-1] + (Z,))),
      context_log_likelihood_fn=lambda z, c: Bernoulli(jnp.tile(z, 3) + c[..., :1]).log_prob(x))


@pytest.mark.parametrize("num_samples", [0, -1])
def test_sample_counts_below_one_are_errors(num_samples):
  for call in (lambda: objectives.elbo(jax.random.key(0), Q, LOG_LIK, num_samples=num_samples),
               lambda: objectives.iwae_bound(jax.random.key(0), Q, LOG_LIK, num_samples=num_samples),
               lambda: _meta(num_samples=num_samples),
               lambda: objectives.homoencoder_elbo(jax.random.key(0), X, jnp.ones((B, N, D)), num_samples=num_samples,
                                                   **_context_fns(X))):
    with pytest.raises(ValueError, match=f"num_samples must be an integer >= 1; got {num_samples}"):
      call()
  with pytest.raises(ValueError, match=f"chunk_size must be an integer >= 1; got {num_samples}"):
    objectives.iwae_bound(jax.random.key(0), Q, LOG_LIK, num_samples=10, chunk_size=num_samples)
  with pytest.raises(TypeError, match="num_samples must be an integer >= 1; got 2.5"):
    objectives.elbo(jax.random.key(0), Q, LOG_LIK, num_samples=2.5)


def test_decoder_indices_out_of_range_are_errors_and_nan_under_jit():
  with pytest.raises(ValueError, match=r"decoder_index=\[0, 7, 1\] is out of range for 3 decoders"):
    _meta(decoder_index=jnp.array([0, 7, 1]))
  with pytest.raises(ValueError, match=r"decoder_index=\[-1, 0, 1\] is out of range"):
    _meta(decoder_index=np.array([-1, 0, 1]))
  with pytest.raises(TypeError, match="decoder_index must hold integers"):
    _meta(decoder_index=jnp.array([0.0, 1.0, 2.0]))
  traced = jax.jit(lambda index: _meta(decoder_index=index))(jnp.array([2, 7, -1]))
  assert np.all(np.isfinite(traced[0])) and np.all(np.isnan(traced[1:]))  # never decoder 2's value
  np.testing.assert_array_equal(traced[0], _meta(decoder_index=jnp.array([2, 0, 0]))[0])


def test_shapes_are_checked_before_any_broadcast():
  with pytest.raises(ValueError, match=r"mean has shape \(4, 2\) but log_variance has shape \(4, 1\)"):
    DiagonalGaussian(jnp.zeros((B, 2)), jnp.zeros((B, 1)))
  with pytest.raises(ValueError, match=r"prior has shape \(4, 3\) but the posterior has shape \(4, 2\)"):
    objectives.elbo(jax.random.key(0), Q, LOG_LIK, prior=DiagonalGaussian(jnp.zeros((B, 3)), jnp.zeros((B, 3))))
  with pytest.raises(ValueError, match=r"q.mean has shape \(4, 2\) but p.mean has shape \(4, 3\)"):
    kl_divergence(Q, DiagonalGaussian(jnp.zeros((B, 3)), jnp.zeros((B, 3))))
  sets = jnp.ones((2, N, D))
  for scalar in (lambda z, c: jnp.float32(-1.0), lambda z, c: jnp.zeros((1,))):  # were broadcast to a wrong bound
    with pytest.raises(ValueError, match=r"context_log_likelihood_fn's value .* must have shape \(2, 5\)"):
      objectives.statistician_elbo(jax.random.key(0), sets, **{**_context_fns(sets),
                                                                "context_log_likelihood_fn": scalar})
    with pytest.raises(ValueError, match=r"context_log_likelihood_fn's value .* must have shape \(4,\)"):
      objectives.homoencoder_elbo(jax.random.key(0), X, jnp.ones((B, N, D)), **{**_context_fns(X),
                                                                                 "context_log_likelihood_fn": scalar})
  wrong_prior = lambda c: DiagonalGaussian(jnp.zeros((B, 3)), jnp.zeros((B, 3)))
  with pytest.raises(ValueError, match=r"latent_prior_fn's p\(z \| c\) has shape \(4, 3\)"):
    objectives.homoencoder_elbo(jax.random.key(0), X, jnp.ones((B, N, D)), latent_prior_fn=wrong_prior,
                                **_context_fns(X))


def test_empty_sets_and_batches_are_errors():
  with pytest.raises(ValueError, match=r"sets must hold at least one set of at least one element; got .*\(2, 0, 6\)"):
    objectives.statistician_elbo(jax.random.key(0), jnp.ones((2, 0, D)), **_context_fns(jnp.ones((2, 0, D))))
  with pytest.raises(ValueError, match=r"sets must hold at least one set .* \(4, 0, 6\)"):
    objectives.homoencoder_elbo(jax.random.key(0), X, jnp.ones((B, 0, D)), **_context_fns(X))
  with pytest.raises(ValueError, match=r"sets must not be empty; got an array of shape \(3, 4, 0, 6\)"):
    objectives.meta_elbo(jax.random.key(0), jnp.ones((K, B, D)), jnp.ones((K, B, 0, D)),
                         meta_inference_fn=None, decoder_log_likelihood_fn=None, decoder_params={"w": jnp.ones(K)})
  with pytest.raises(ValueError, match=r"pseudo_posteriors must have shape \(P, C\) with P >= 1; got \(0, 3\)"):
    objectives.vampprior_log_prob(jnp.zeros(3), DiagonalGaussian(jnp.zeros((0, 3)), jnp.zeros((0, 3))))


@pytest.mark.parametrize("weight", [-0.1, float("inf"), float("nan")])
def test_bad_context_kl_weights_are_errors(weight):
  with pytest.raises(ValueError, match=f"context_kl_weight must be a finite number >= 0; got {weight}"):
    objectives.homoencoder_elbo(jax.random.key(0), X, jnp.ones((B, N, D)), context_kl_weight=weight,
                                **_context_fns(X))


def test_iterative_inference_counts_and_prior_are_checked():
  encoder = lambda x, q, s: None
  for name, value in (("num_steps", 0), ("latent_dim", 0), ("num_samples", -2)):
    kwargs = {"num_steps": 2, "latent_dim": Z, name: value}
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1; got {value}"):
      iterative_inference(jax.random.key(0), X, encoder_fn=encoder, log_likelihood_fn=LOG_LIK, **kwargs)
  with pytest.raises(ValueError, match=r"prior has shape \(4, 3\); expected \(4, 2\)"):
    iterative_inference(jax.random.key(0), X, encoder_fn=encoder, log_likelihood_fn=LOG_LIK, num_steps=1,
                        latent_dim=Z, prior=DiagonalGaussian(jnp.zeros((B, 3)), jnp.zeros((B, 3))))
  with pytest.raises(ValueError, match=r"decoder_index=\[3, 0, 0\] is out of range for 3 decoders"):
    iterative_meta_inference(jax.random.key(0), jnp.ones((K, B, D)), jnp.ones((K, B, N, D)), summary_fn=None,
                             encoder_fn=None, decoder_log_likelihood_fn=None, decoder_params=jnp.zeros((K, Z, D)),
                             num_steps=1, latent_dim=Z, decoder_index=jnp.array([3, 0, 0]))


def test_probe_labels_and_features_are_checked():
  features, labels = jnp.ones((4, 2)), jnp.array([0, 1, 2, 1])
  with pytest.raises(ValueError, match=r"labels must lie in \[0, num_classes=2\); got \[2\]"):
    probe.fit_linear_probe(features, labels, num_classes=2)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, num_classes=3\); got \[-1\]"):
    probe.fit_linear_probe(features, jnp.array([0, -1, 2, 1]), num_classes=3)
  with pytest.raises(ValueError, match=r"features must be finite; rows \[1\] \(of 1\) hold NaN or inf"):
    probe.fit_linear_probe(features.at[1, 0].set(jnp.nan), labels, num_classes=3)
  with pytest.raises(TypeError, match="labels must be integers"):
    probe.fit_linear_probe(features, labels.astype(jnp.float32), num_classes=3)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, num_classes=2\)"):
    probe.code_geometry(features, labels, num_classes=2)
  with pytest.raises(ValueError, match="max_iterations=0 is not allowed"):
    probe.fit_linear_probe(features, labels, num_classes=3, max_iterations=0)
