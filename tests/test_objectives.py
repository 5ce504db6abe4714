import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from meta_amortized import objectives
from meta_amortized.distributions import DiagonalGaussian


def _standard_normal_log_density(z):
  return DiagonalGaussian(jnp.zeros_like(z), jnp.zeros_like(z)).log_prob(z)


def test_elbo_of_exact_posterior_is_log_evidence(linear_gaussian):
  model = linear_gaussian
  x = model.sample_x(jax.random.key(0), 8)
  q = model.posterior(x)
  log_px = model.log_evidence(x)
  # With the exact posterior, log p(x, z) - log q(z) = log p(x) at every z: the
  # Monte Carlo KL path (a prior given as a density) is exact with one sample.
  single = objectives.elbo(jax.random.key(1), q, functools.partial(model.log_likelihood, x),
                           prior=_standard_normal_log_density)
  np.testing.assert_allclose(single, log_px, rtol=1e-4, atol=1e-4)
  # The analytic-KL path is unbiased; with many samples it meets log p(x) too.
  analytic = jax.jit(lambda q: objectives.elbo(jax.random.key(2), q, functools.partial(model.log_likelihood, x),
                                               num_samples=20_000))(q)
  np.testing.assert_allclose(analytic, log_px, atol=0.02)
  np.testing.assert_allclose(model.exact_elbo(x, q), log_px, rtol=1e-5)


def test_elbo_of_other_posteriors_is_lower(linear_gaussian):
  model = linear_gaussian
  x = model.sample_x(jax.random.key(0), 8)
  exact = model.posterior(x)
  log_px = model.log_evidence(x)
  for shift, scale in [(0.3, 0.0), (0.0, 1.0), (-0.5, -1.0)]:
    q = DiagonalGaussian(exact.mean + shift, exact.log_variance + scale)
    bound = objectives.elbo(jax.random.key(3), q, functools.partial(model.log_likelihood, x), num_samples=20_000)
    closed = model.exact_elbo(x, q)
    np.testing.assert_allclose(bound, closed, atol=0.05)
    assert np.all(closed < log_px - 1e-3)


def test_iwae_bound_tightens_towards_log_evidence(linear_gaussian):
  model = linear_gaussian
  x = model.sample_x(jax.random.key(0), 16)
  exact = model.posterior(x)
  proposal = DiagonalGaussian(exact.mean + 0.3, exact.log_variance + 0.7)
  log_px = model.log_evidence(x)
  def mean_bound(k, repeats):
    # Averaged over repeated estimates, so that the comparison is of the bound, not of one draw.
    keys = jax.random.split(jax.random.key(k), repeats)
    estimates = jax.jit(jax.vmap(lambda key: objectives.iwae_bound(
        key, proposal, functools.partial(model.log_likelihood, x), num_samples=k, chunk_size=min(k, 250))))(keys)
    return float(np.mean(estimates))

  bounds = [mean_bound(1, 1024), mean_bound(10, 64), mean_bound(100, 16), mean_bound(1000, 8)]
  assert all(a < b for a, b in zip(bounds, bounds[1:], strict=False)), bounds
  assert bounds[-1] < np.mean(log_px) + 0.01
  np.testing.assert_allclose(bounds[-1], np.mean(log_px), atol=0.02)
  np.testing.assert_allclose(bounds[0], np.mean(model.exact_elbo(x, proposal)), atol=0.05)


def test_iwae_takes_any_number_of_samples_the_last_chunk_holding_the_rest(linear_gaussian):
  """K = 10 in chunks of 3 (3 + 3 + 3 + 1) is the same bound as K = 10 in one chunk: the log-mean-exp of the same
  ten weights, drawn from other keys; over many draws the two agree in mean, and both lie below log p(x)."""
  x = linear_gaussian.sample_x(jax.random.key(0), 2)
  q = linear_gaussian.posterior(x)
  ll = functools.partial(linear_gaussian.log_likelihood, x)
  bound = lambda chunk: jax.jit(jax.vmap(lambda k: objectives.iwae_bound(k, q, ll, num_samples=10, chunk_size=chunk)))(
      jax.random.split(jax.random.key(1), 2000))
  chunked, whole = bound(3), bound(10)
  assert chunked.shape == whole.shape == (2000, 2) and np.all(np.isfinite(chunked))
  np.testing.assert_allclose(chunked.mean(0), whole.mean(0), atol=2e-3)
  np.testing.assert_allclose(chunked.mean(0), linear_gaussian.log_evidence(x), atol=2e-3)  # q is exact: tight
  assert objectives.iwae_bound(jax.random.key(0), q, ll, num_samples=150).shape == (2,)  # the default chunk, 100


def _toy_meta_problem(num_distributions=3, batch=4, set_size=5, data_dim=6, latent=2, seed=0):
  rng = np.random.default_rng(seed)
  queries = jnp.asarray(rng.normal(size=(num_distributions, batch, data_dim)), jnp.float32)
  sets = jnp.asarray(rng.normal(size=(num_distributions, batch, set_size, data_dim)), jnp.float32)
  enc = {"w": jnp.asarray(rng.normal(size=(2 * data_dim, 2 * latent)) * 0.3, jnp.float32)}
  decoders = {"w": jnp.asarray(rng.normal(size=(num_distributions, latent, data_dim)), jnp.float32),
              "b": jnp.asarray(rng.normal(size=(num_distributions, data_dim)), jnp.float32)}

  def meta_inference(enc, d, x):
    summary = jnp.mean(jnp.tanh(d), axis=-2)
    out = jnp.concatenate([x, summary], -1) @ enc["w"]
    return DiagonalGaussian(out[..., :latent], out[..., latent:])

  def log_likelihood(theta, x, z):
    mean = z @ theta["w"] + theta["b"]
    return DiagonalGaussian(mean, jnp.zeros_like(mean)).log_prob(x)

  return queries, sets, enc, decoders, meta_inference, log_likelihood


def test_meta_elbo_with_one_distribution_and_set_blind_inference_is_elbo():
  queries, sets, enc, decoders, _, log_likelihood = _toy_meta_problem(num_distributions=1)
  encoder = lambda x: DiagonalGaussian(*jnp.split(x @ enc["w"][:6], 2, axis=-1))
  key = jax.random.key(7)
  meta = objectives.meta_elbo(key, queries, sets, meta_inference_fn=lambda d, x: encoder(x),
                              decoder_log_likelihood_fn=log_likelihood, decoder_params=decoders, num_samples=3)
  theta = jax.tree.map(lambda p: p[0], decoders)
  plain = objectives.elbo(jax.random.split(key, 1)[0], encoder(queries[0]),
                          lambda z: log_likelihood(theta, queries[0], z), num_samples=3)
  assert meta.shape == (1, 4)
  np.testing.assert_array_equal(meta[0], plain)


def test_meta_elbo_vmap_equals_python_loop_and_jit():
  queries, sets, enc, decoders, meta_inference, log_likelihood = _toy_meta_problem()
  key = jax.random.key(0)
  fn = functools.partial(objectives.meta_elbo, meta_inference_fn=functools.partial(meta_inference, enc),
                         decoder_log_likelihood_fn=log_likelihood, decoder_params=decoders)
  batched = jax.jit(fn)(key, queries, sets)
  keys = jax.random.split(key, 3)
  for i in range(3):
    theta = jax.tree.map(lambda p: p[i], decoders)
    one = objectives.elbo(keys[i], meta_inference(enc, sets[i], queries[i]),
                          lambda z: log_likelihood(theta, queries[i], z))
    np.testing.assert_allclose(batched[i], one, rtol=1e-6)
  np.testing.assert_allclose(jax.jit(fn)(key, queries, sets), batched, rtol=1e-5)
  # decoder_index picks decoders: reversed indices give the loop with reversed decoders.
  reverse = fn(key, queries, sets, decoder_index=jnp.array([2, 1, 0]))
  swapped = objectives.meta_elbo(key, queries, sets, meta_inference_fn=functools.partial(meta_inference, enc),
                                 decoder_log_likelihood_fn=log_likelihood,
                                 decoder_params=jax.tree.map(lambda p: p[::-1], decoders))
  np.testing.assert_allclose(reverse, swapped, rtol=1e-6)


def test_meta_elbo_shape_errors_name_the_argument():
  queries, sets, enc, decoders, meta_inference, log_likelihood = _toy_meta_problem()
  fn = functools.partial(objectives.meta_elbo, jax.random.key(0),
                         meta_inference_fn=functools.partial(meta_inference, enc),
                         decoder_log_likelihood_fn=log_likelihood)
  with pytest.raises(ValueError, match=r"sets must have a leading distribution axis of size 3.*\(2, 4, 5, 6\)"):
    fn(queries, sets[:2], decoder_params=decoders)
  with pytest.raises(ValueError, match=r"decoder_params holds 2 decoders but queries has 3"):
    fn(queries, sets, decoder_params=jax.tree.map(lambda p: p[:2], decoders))
  with pytest.raises(ValueError, match=r"decoder_index .* must have shape \(3,\); got shape \(2,\)"):
    fn(queries, sets, decoder_params=decoders, decoder_index=jnp.array([0, 1]))
  with pytest.raises(ValueError, match=r"decoder_log_likelihood_fn's value|log_likelihood_fn's value .* \(1, 4\); "
                                       r"got shape \(1, 4, 6\)"):
    fn(queries, sets, decoder_params=decoders,
       decoder_log_likelihood_fn=lambda theta, x, z: jnp.zeros(x.shape))
  with pytest.raises(ValueError, match=r"queries must be \(K, B, \*event\)"):
    fn(queries[0, 0], sets, decoder_params=decoders)
  with pytest.raises(ValueError, match=r"log_likelihood_fn"):
    jax.jit(lambda q: objectives.elbo(jax.random.key(0), q, lambda z: jnp.zeros(3)))(
        DiagonalGaussian(jnp.zeros((4, 2)), jnp.zeros((4, 2))))


def test_vampprior_log_prob_is_the_mixture_density():
  rng = np.random.default_rng(0)
  means, log_vars = rng.normal(size=(7, 3)), rng.normal(size=(7, 3)) * 0.3
  components = DiagonalGaussian(jnp.asarray(means, jnp.float32), jnp.asarray(log_vars, jnp.float32))
  c = rng.normal(size=(5, 3))
  densities = np.prod(np.exp(-0.5 * (c[:, None] - means) ** 2 / np.exp(log_vars))
                      / np.sqrt(2 * np.pi * np.exp(log_vars)), axis=-1)
  np.testing.assert_allclose(objectives.vampprior_log_prob(jnp.asarray(c, jnp.float32), components),
                             np.log(densities.mean(-1)), rtol=1e-5)
  single = DiagonalGaussian(components.mean[:1], components.log_variance[:1])
  np.testing.assert_allclose(objectives.vampprior_log_prob(jnp.asarray(c, jnp.float32), single),
                             single.log_prob(jnp.asarray(c, jnp.float32)), rtol=1e-5)


def test_vampprior_log_prob_stays_accurate_at_its_scale():
  """The expanded square loses no accuracy that matters at the VHE's sizes: 500 components of 300 dimensions,
  narrow components, values away from them (checked in float64)."""
  rng = np.random.default_rng(1)
  means, log_vars = rng.normal(size=(500, 300)) * 3.0, rng.normal(size=(500, 300)) - 4.0
  c = rng.normal(size=(8, 300)) * 3.0
  per_component = -0.5 * np.sum(np.log(2 * np.pi) + log_vars + (c[:, None] - means) ** 2 / np.exp(log_vars), -1)
  expected = np.logaddexp.reduce(per_component, axis=-1) - np.log(500)
  components = DiagonalGaussian(jnp.asarray(means, jnp.float32), jnp.asarray(log_vars, jnp.float32))
  got = objectives.vampprior_log_prob(jnp.asarray(c, jnp.float32), components)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def _toy_context_model(data_dim=4, context=3, latent=2, log_variance=0.0, seed=0):
  rng = np.random.default_rng(seed)
  w = {k: jnp.asarray(rng.normal(size=s) * 0.5, jnp.float32) for k, s in
       [("c", (data_dim, 2 * context)), ("zx", (data_dim, latent)), ("zc", (context, latent)),
        ("p", (context, latent)), ("xz", (latent, data_dim)), ("xc", (context, data_dim))]}

  def fns(w, x):
    def context_posterior(sets):
      mean = jnp.mean(jnp.tanh(sets @ w["c"]), axis=-2)
      return DiagonalGaussian(mean[..., :context], mean[..., context:] + log_variance)

    def latent_posterior(x, c):
      mean = x @ w["zx"] + c @ w["zc"]
      return DiagonalGaussian(mean, jnp.full_like(mean, log_variance))

    def latent_prior(c):
      mean = c @ w["p"]
      return DiagonalGaussian(mean, jnp.zeros_like(mean))

    def log_likelihood(z, c):  # of x, the sets (NS) or the queries (VHE)
      mean = z @ w["xz"] + c @ w["xc"]
      return DiagonalGaussian(mean, jnp.zeros_like(mean)).log_prob(x)

    return dict(context_posterior_fn=context_posterior, latent_posterior_fn=latent_posterior,
                latent_prior_fn=latent_prior, context_log_likelihood_fn=log_likelihood)
  return w, fns


def test_statistician_bound_is_sum_of_homoencoder_bounds_when_posteriors_are_sharp():
  # With near-deterministic posteriors both bounds are deterministic, and the NS
  # bound of a set equals the sum over its elements of the VHE bound that uses the
  # whole set as context with KL weight 1/N.
  w, fns = _toy_context_model(log_variance=-30.0)
  sets = jax.random.normal(jax.random.key(0), (2, 5, 4))
  statistician = jax.jit(functools.partial(objectives.statistician_elbo, **fns(w, sets)))(jax.random.key(1), sets)
  queries = sets.reshape(10, 4)
  per_query_sets = jnp.repeat(sets, 5, axis=0)
  homoencoder = jax.jit(functools.partial(objectives.homoencoder_elbo, **fns(w, queries)))(
      jax.random.key(2), queries, per_query_sets)
  np.testing.assert_allclose(statistician, homoencoder.reshape(2, 5).sum(1), rtol=1e-4)


def test_homoencoder_context_weight_scales_the_context_kl():
  w, fns = _toy_context_model()
  queries = jax.random.normal(jax.random.key(0), (6, 4))
  sets = jax.random.normal(jax.random.key(1), (6, 10, 4))
  key = jax.random.key(2)
  default = jax.jit(functools.partial(objectives.homoencoder_elbo, **fns(w, queries)))(key, queries, sets)
  weight_one = jax.jit(functools.partial(objectives.homoencoder_elbo, context_kl_weight=1.0, **fns(w, queries)))(
      key, queries, sets)
  posterior = fns(w, queries)["context_posterior_fn"](sets)
  context_kl = 0.5 * jnp.sum(jnp.exp(posterior.log_variance) + posterior.mean**2 - 1 - posterior.log_variance, -1)
  np.testing.assert_allclose(default - weight_one, 0.9 * context_kl, rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match=r"sets must be \(B, N, \*event\) for queries of shape"):
    objectives.homoencoder_elbo(key, queries[:5], sets, **fns(w, queries[:5]))


def test_vampprior_context_prior_uses_monte_carlo_kl():
  w, fns = _toy_context_model()
  sets = jax.random.normal(jax.random.key(0), (3, 5, 4))
  standard = DiagonalGaussian(jnp.zeros((1, 3)), jnp.zeros((1, 3)))
  bound = jax.jit(functools.partial(objectives.statistician_elbo, num_samples=4000, **fns(w, sets)))
  analytic = bound(jax.random.key(1), sets)
  as_mixture = jax.jit(functools.partial(
      objectives.statistician_elbo, num_samples=4000,
      context_prior=lambda c: objectives.vampprior_log_prob(c, standard), **fns(w, sets)))(jax.random.key(1), sets)
  np.testing.assert_allclose(as_mixture, analytic, rtol=0.02)


@pytest.mark.parametrize("objective", ["elbo", "iwae", "meta_elbo", "statistician", "homoencoder", "vampprior"])
def test_gradients_are_finite_and_match_finite_differences(objective, linear_gaussian):
  with jax.enable_x64(True):
    key = jax.random.key(0)
    if objective in ("elbo", "iwae"):
      x = jnp.asarray(linear_gaussian.sample_x(key, 3), jnp.float64)

      def fn(mean, log_variance):
        q = DiagonalGaussian(mean, log_variance)
        ll = functools.partial(linear_gaussian.log_likelihood, x)
        if objective == "elbo":
          return jnp.sum(objectives.elbo(key, q, ll, num_samples=2))
        return jnp.sum(objectives.iwae_bound(key, q, ll, num_samples=6, chunk_size=3))

      args = (jnp.full((3, 3), 0.1), jnp.full((3, 3), -0.2))
    elif objective == "vampprior":
      c = jax.random.normal(key, (4, 3), jnp.float64)

      def fn(means, log_variances):
        return jnp.sum(objectives.vampprior_log_prob(c, DiagonalGaussian(means, log_variances)))

      args = (jax.random.normal(jax.random.key(1), (5, 3), jnp.float64), jnp.full((5, 3), -0.3))
    elif objective == "meta_elbo":
      queries, sets, enc, decoders, meta_inference, log_likelihood = _toy_meta_problem()
      queries, sets = queries.astype(jnp.float64), sets.astype(jnp.float64)

      def fn(enc, decoders):
        return jnp.sum(objectives.meta_elbo(
            key, queries, sets, meta_inference_fn=functools.partial(meta_inference, enc),
            decoder_log_likelihood_fn=log_likelihood, decoder_params=decoders))

      args = jax.tree.map(lambda a: a.astype(jnp.float64), (enc, decoders))
    else:
      w, fns = _toy_context_model()
      sets = jax.random.normal(jax.random.key(1), (2, 5, 4), jnp.float64)

      def fn(w):
        if objective == "statistician":
          return jnp.sum(objectives.statistician_elbo(key, sets, **fns(w, sets)))
        return jnp.sum(objectives.homoencoder_elbo(key, sets[:, 0], sets, **fns(w, sets[:, 0])))

      args = (jax.tree.map(lambda a: a.astype(jnp.float64), w),)
    grads = jax.jit(jax.grad(fn, argnums=tuple(range(len(args)))))(*args)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    check_grads(jax.jit(fn), args, order=1, modes=("rev",), atol=1e-5, rtol=1e-5)


def test_enumerated_elbo_is_log_evidence_at_the_exact_posterior_and_lower_elsewhere():
  from meta_amortized.distributions import Categorical
  log_likelihoods = jnp.array([[-1.0, -3.0, -0.5], [-2.0, -2.0, -7.0]])
  log_prior = jnp.log(jnp.array([0.2, 0.3, 0.5]))
  log_evidence = jax.nn.logsumexp(log_likelihoods + log_prior, axis=-1)
  exact = Categorical(log_likelihoods + log_prior)
  bound = jax.jit(objectives.enumerated_elbo)(exact, log_likelihoods,
                                              prior=Categorical(jnp.broadcast_to(log_prior, (2, 3))))
  np.testing.assert_allclose(bound, log_evidence, rtol=1e-6)
  uniform = objectives.enumerated_elbo(Categorical(jnp.zeros((2, 3))), log_likelihoods,
                                       prior=Categorical(jnp.broadcast_to(log_prior, (2, 3))))
  assert np.all(uniform < log_evidence)
  with pytest.raises(ValueError, match="log_likelihoods"):
    objectives.enumerated_elbo(exact, log_likelihoods[:, :2])
