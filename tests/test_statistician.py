import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from meta_amortized import objectives, statistician
from meta_amortized.networks import ContextPosterior, LatentPosterior, LatentPrior, StatisticianDecoder
from meta_amortized.training import init_train_state, make_train_step

D = 12
LATENT_PRIOR = LatentPrior((8,), 3)


def _small(kind, *, latent_prior=LATENT_PRIOR, **kwargs):
  model = statistician.NeuralStatistician if kind == "ns" else statistician.VariationalHomoencoder
  return model(context=ContextPosterior(width=8, context_dim=5), latent_posterior=LatentPosterior(8, 3),
               latent_prior=latent_prior, decoder=StatisticianDecoder(8, 16, D), **kwargs)


def _init(model, key):
  return model.init(key, 1, (D,))[0]


@pytest.mark.parametrize("model", [_small("ns"), _small("vhe"), _small("vhe", num_pseudo_sets=4, pseudo_set_size=3)],
                         ids=["ns", "vhe", "vhe_vampprior"])
def test_baselines_train_on_device_batches(model):
  data = jax.random.uniform(jax.random.key(0), (3, 40, D)) ** 2
  optimizer = optax.adam(3e-3)
  state = init_train_state(_init(model, jax.random.key(1)), optimizer)
  step = make_train_step(functools.partial(model.loss, batch_size=6, set_size=4), optimizer)
  losses = []
  for key in jax.random.split(jax.random.key(2), 25):
    state, metrics = step(state, key, data)
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])
  codes = model.encode(state.params, {}, jax.random.key(3), data[0, :5], data[0, :7])
  assert codes.shape == (7, 3) and np.all(np.isfinite(codes))


def test_statistician_bound_is_the_per_set_bound_over_the_batch():
  model = _small("ns")
  params = _init(model, jax.random.key(0))
  queries = jax.random.uniform(jax.random.key(1), (2, 6, D))
  key = jax.random.key(2)
  per_element = jax.jit(lambda p, k, q: model.bound(p, k, q))(params, key, queries)
  keys = jax.random.split(key, 2)
  bound = jax.jit(lambda p, k, sets: objectives.statistician_elbo(
      k, sets, context_log_likelihood_fn=lambda z, c: model.log_likelihood(p, sets, z, c), **model.bound_fns(p)))
  for k in range(2):
    expected = bound(params, keys[k], queries[k][None])[0] / 6
    np.testing.assert_allclose(per_element[k], expected, rtol=1e-5)


def test_vampprior_is_the_mixture_of_the_pseudo_set_posteriors():
  model = _small("vhe", num_pseudo_sets=4, pseudo_set_size=3)
  params = _init(model, jax.random.key(0))
  assert params["pseudo_inputs"].shape == (4, 3, D)
  assert float(params["pseudo_inputs"].min()) >= 0.0 and float(params["pseudo_inputs"].max()) <= 1.0
  c = jax.random.normal(jax.random.key(1), (5, 5))
  prior = model.bound_fns(params, model.pseudo_inputs(params))["context_prior"]
  posteriors = [model.context.apply(params["context"], params["pseudo_inputs"][p]) for p in range(4)]
  densities = jnp.stack([q.log_prob(c) for q in posteriors], axis=-1)
  np.testing.assert_allclose(prior(c), jax.nn.logsumexp(densities, -1) - jnp.log(4.0), rtol=1e-5)


@pytest.mark.parametrize(("field", "value"), [("num_pseudo_sets", -1), ("pseudo_set_size", 0),
                                              ("context_kl_weight", -0.5), ("context_kl_weight", float("nan"))])
def test_bad_vhe_settings_are_errors_naming_them(field, value):
  with pytest.raises(ValueError, match=f"{field}={value!r} is not allowed"):
    statistician.VariationalHomoencoder(**{field: value})


@pytest.mark.parametrize("kind", ["ns", "vhe"])
def test_standard_latent_prior_is_a_learned_prior_that_outputs_zero(kind):
  learned, standard = _small(kind), _small(kind, latent_prior=None)
  params = _init(learned, jax.random.key(0))
  standard_params = _init(standard, jax.random.key(0))
  assert "latent_prior" not in standard_params
  assert jax.tree.all(jax.tree.map(np.array_equal, standard_params,
                                   {k: v for k, v in params.items() if k != "latent_prior"}))
  # A learned p(z | c) whose last layer is zero outputs mean 0 and log-variance 0 for every c.
  mlp = params["latent_prior"]["params"]["MLP_0"]
  mlp["dense_1"] = jax.tree.map(jnp.zeros_like, mlp["dense_1"])
  queries = jax.random.uniform(jax.random.key(1), (2, 6, D))
  sets = jax.random.uniform(jax.random.key(2), (2, 6, 4, D)) if kind == "vhe" else None  # NS: its batch
  bound = lambda model, p: model.bound(p, jax.random.key(3), queries, sets)
  np.testing.assert_allclose(bound(standard, standard_params), bound(learned, params), rtol=1e-6)
  assert not np.allclose(bound(learned, _init(learned, jax.random.key(0))), bound(learned, params))


@pytest.mark.parametrize("kind", ["ns", "vhe"])
@pytest.mark.parametrize("network", ["decoder", "latent_posterior"])
def test_network_without_context_is_one_whose_context_weights_are_zero(kind, network):
  with_c = _small(kind)
  networks_without_c = {"decoder": StatisticianDecoder(8, 16, D, use_context=False),
                        "latent_posterior": LatentPosterior(8, 3, use_context=False)}
  without_c = dataclasses.replace(with_c, **{network: networks_without_c[network]})
  params = _init(with_c, jax.random.key(0))
  params_without_c = _init(without_c, jax.random.key(0))
  assert "from_c" in params[network]["params"] and "from_c" not in params_without_c[network]["params"]
  # Every other parameter is drawn as in the network with c, so zeroing its c -> hidden layer gives the same bound.
  params[network]["params"]["from_c"] = jax.tree.map(jnp.zeros_like, params[network]["params"]["from_c"])
  params_without_c = {**params, network: params_without_c[network]}
  queries = jax.random.uniform(jax.random.key(1), (2, 6, D))
  sets = jax.random.uniform(jax.random.key(2), (2, 6, 4, D)) if kind == "vhe" else None  # NS: its batch
  bound = lambda model, p: model.bound(p, jax.random.key(3), queries, sets)
  np.testing.assert_allclose(bound(without_c, params_without_c), bound(with_c, params), rtol=1e-6)
  # The network's output does not depend on c without it, and does with it.
  first_input = jnp.ones((2, 3 if network == "decoder" else D))
  c = jax.random.normal(jax.random.key(4), (2, 2, 5))
  apply = lambda model, p, c: jax.tree.leaves(getattr(model, network).apply(p[network], first_input, c))
  for a, b in zip(apply(without_c, params_without_c, c[0]), apply(without_c, params_without_c, c[1]), strict=True):
    np.testing.assert_array_equal(a, b)
  fresh = _init(with_c, jax.random.key(0))
  assert not np.allclose(apply(with_c, fresh, c[0])[0], apply(with_c, fresh, c[1])[0])
