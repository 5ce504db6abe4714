import functools

import flax.linen
import jax
import jax.numpy as jnp
import numpy as np

from meta_amortized import MetaVAE, networks, objectives
from meta_amortized.distributions import Bernoulli
from meta_amortized.metavae import IterativeMetaVAE
from meta_amortized.sampling import sample_meta_batch


def test_summary_network_is_permutation_invariant_and_a_true_mean():
  net = networks.SummaryNetwork(features=(8, 6))
  sets = jax.random.normal(jax.random.key(0), (3, 5, 4))
  params = net.init(jax.random.key(1), sets)
  apply = jax.jit(net.apply)
  out = apply(params, sets)
  permuted = sets[:, jax.random.permutation(jax.random.key(2), 5)]
  np.testing.assert_allclose(apply(params, permuted), out, rtol=1e-5, atol=1e-6)
  # A mean, not a sum: repeating every element leaves the summary unchanged.
  np.testing.assert_allclose(apply(params, jnp.concatenate([sets, sets], axis=1)), out, rtol=1e-5, atol=1e-6)


def test_meta_inference_network_is_permutation_invariant_and_broadcasts_a_shared_set():
  net = networks.MetaInferenceNetwork(summary_features=(8, 6), hidden=(7,), latent_dim=2)
  shared = jax.random.normal(jax.random.key(0), (5, 4))
  queries = jax.random.normal(jax.random.key(1), (3, 4))
  params = net.init(jax.random.key(2), shared, queries)
  one = net.apply(params, shared, queries)
  repeated = net.apply(params, jnp.broadcast_to(shared, (3, 5, 4)), queries)
  assert one.mean.shape == (3, 2)
  per_query = jax.random.normal(jax.random.key(3), (3, 5, 4))
  permuted = per_query[:, ::-1]
  np.testing.assert_allclose(net.apply(params, permuted, queries).mean, net.apply(params, per_query, queries).mean,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(one.mean, repeated.mean, rtol=1e-6)
  np.testing.assert_allclose(one.log_variance, repeated.log_variance, rtol=1e-6)
  # `summarize` is the h(D) the posterior is computed from: r(CONCAT(x, h(D))) with the same parameters.
  summary = net.apply(params, per_query, method="summarize")
  assert summary.shape == (3, 6)
  aggregation = networks.Encoder((7,), 2)
  direct = aggregation.apply({"params": params["params"]["aggregation"]}, jnp.concatenate([queries, summary], -1))
  np.testing.assert_allclose(direct.mean, net.apply(params, per_query, queries).mean, rtol=1e-6)


def test_metavae_has_the_original_parameter_count():
  # docs/design.md section 1: 4.21 M parameters with K = 5, 6.18 M with K = 9.
  for k, millions in [(5, 4.21), (9, 6.18)]:
    shapes = jax.eval_shape(lambda key, k=k: MetaVAE().init(key, k)[0], jax.random.key(0))
    assert round(sum(np.prod(s.shape) for s in jax.tree.leaves(shapes)) / 1e6, 2) == millions


def test_shared_decoder_metavae_is_a_metavae_whose_decoders_are_copies_of_one():
  inference, decoder = networks.MetaInferenceNetwork((8,), (8,), 3), networks.Decoder((8,), 6)
  shared = MetaVAE(inference, decoder, shared_decoder=True)
  params, _ = shared.init(jax.random.key(0), 4, (6,))
  assert all(leaf.shape[0] == 1 for leaf in jax.tree.leaves(params["decoders"]))
  copies = {**params, "decoders": jax.tree.map(lambda leaf: jnp.repeat(leaf, 4, axis=0), params["decoders"])}
  data = jax.random.uniform(jax.random.key(1), (4, 20, 6))
  queries, sets = sample_meta_batch(jax.random.key(2), data, batch_size=5, set_size=3)
  key = jax.random.key(3)
  np.testing.assert_allclose(shared.bound(params, key, queries, sets),
                             MetaVAE(inference, decoder).bound(copies, key, queries, sets), rtol=1e-6)
  # Its one decoder learns from every distribution: its gradient is the sum of the copies'.
  loss = lambda model, p: -jnp.mean(model.bound(p, key, queries, sets))
  shared_grads = jax.grad(functools.partial(loss, shared))(params)["decoders"]
  copies_grads = jax.grad(functools.partial(loss, MetaVAE(inference, decoder)))(copies)["decoders"]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a[0], b.sum(axis=0), rtol=1e-5, atol=1e-7),
               shared_grads, copies_grads)


def test_metavae_with_a_query_only_inference_and_a_shared_decoder_is_a_vae():
  inference, decoder = networks.QueryOnlyInference((8,), 3), networks.Decoder((8,), 6)
  vae = MetaVAE(inference, decoder, shared_decoder=True)
  params, _ = vae.init(jax.random.key(0), 4, (6,))
  data = jax.random.uniform(jax.random.key(1), (4, 20, 6))
  queries, sets = sample_meta_batch(jax.random.key(2), data, batch_size=5, set_size=3)
  key = jax.random.key(3)
  bound = vae.bound(params, key, queries, sets)
  # The set changes nothing: any other sets give the same bound.
  np.testing.assert_array_equal(vae.bound(params, key, queries, 1.0 - sets), bound)
  # Each distribution's bound is the plain ELBO of q(z | x) under the one decoder, with that distribution's key.
  encoder_params = {"params": params["meta_inference"]["params"]["encoder"]}
  theta = jax.tree.map(lambda leaf: leaf[0], params["decoders"])
  def plain_elbo(dist_key, x):
    posterior = networks.Encoder((8,), 3).apply(encoder_params, x)
    return objectives.elbo(dist_key, posterior, lambda z: Bernoulli(decoder.apply(theta, z)).log_prob(x))

  np.testing.assert_allclose(bound, jax.vmap(plain_elbo)(jax.random.split(key, 4), queries), rtol=1e-6)


def test_decoder_bank_vmap_equals_loop_over_independent_decoders():
  decoder = networks.Decoder(hidden=(5,), output_dim=3)
  bank = networks.init_stacked(decoder, jax.random.key(0), 4, jnp.zeros((1, 2)))
  z = jax.random.normal(jax.random.key(1), (4, 6, 2))
  batched = jax.vmap(decoder.apply)(bank, z)
  for k in range(4):
    np.testing.assert_allclose(batched[k], decoder.apply(jax.tree.map(lambda p: p[k], bank), z[k]), rtol=1e-6)
  kernels = bank["params"]["MLP_0"]["dense_0"]["kernel"]
  assert kernels.shape == (4, 2, 5) and not np.allclose(kernels[0], kernels[1])


def test_conv_encoder_decoder_shapes_and_batch_stats():
  encoder = networks.ConvEncoder(features=(4, 4, 4, 8, 8, 8, 8, 8, 8))
  images = jax.random.uniform(jax.random.key(0), (2, 32, 32, 1))
  variables = encoder.init(jax.random.key(1), images, train=False)
  features, updates = encoder.apply(variables, images, train=True, mutable=["batch_stats"])
  assert features.shape == (2, 4 * 4 * 8)
  assert "batch_stats" in updates
  decoder = networks.ConvDecoder(features=(4, 4, 4, 8, 8, 8, 8, 8, 8))
  z = jax.random.normal(jax.random.key(3), (2, 5, 3))
  dec_vars = decoder.init(jax.random.key(2), z)
  assert set(dec_vars) == {"params"}  # stateless: normalised by the batch's own statistics
  assert decoder.apply(dec_vars, z).shape == (2, 5, 32, 32, 1)


def test_batch_stat_norm_standardises_each_feature_over_the_batch():
  x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (4, 6, 6, 5))
  norm = networks.BatchStatNorm()
  y = norm.apply(norm.init(jax.random.key(1), x), x)
  np.testing.assert_allclose(jnp.mean(y, axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.std(y, axis=(0, 1, 2)), 1.0, atol=1e-3)


def test_statistic_networks_shapes():
  sets = jnp.ones((2, 5, 784))
  context = networks.ContextPosterior()
  q_c = context.apply(context.init(jax.random.key(0), sets), sets)
  assert q_c.mean.shape == (2, 300)
  c = q_c.mean
  latent = networks.LatentPosterior()
  assert latent.apply(latent.init(jax.random.key(0), sets[:, 0], c), sets[:, 0], c).mean.shape == (2, 40)
  prior = networks.LatentPrior()
  assert prior.apply(prior.init(jax.random.key(0), c), c).log_variance.shape == (2, 40)
  decoder = networks.StatisticianDecoder()
  z = jnp.zeros((2, 40))
  assert decoder.apply(decoder.init(jax.random.key(0), z, c), z, c).shape == (2, 784)
  linear = networks.ContextPosterior(pre_pool_activation=None, width=3, context_dim=2)
  lin_params = linear.init(jax.random.key(0), sets[..., :4])
  # Without a pre-pool nonlinearity the pooled statistic is linear in the set's mean.
  mean_set = jnp.mean(sets[..., :4], axis=1, keepdims=True)
  np.testing.assert_allclose(linear.apply(lin_params, sets[..., :4]).mean,
                             linear.apply(lin_params, mean_set).mean, rtol=1e-6)


def test_concatenated_context_enters_the_next_layer_additively_and_summed_does_not():
  # After "concat" the next layer is W1 elu(a) + W2 elu(b): a function of a plus one of b, so swapping the contexts of
  # two inputs leaves the sum of the four outputs' differences at zero; after "sum" (elu(a + b)) it does not.
  a = jax.random.normal(jax.random.key(0), (2, 6))
  b = jax.random.normal(jax.random.key(1), (2, 6))
  layer = flax.linen.Dense(5)
  for merge, separable in (("concat", True), ("sum", False)):
    params = layer.init(jax.random.key(2), networks.join_context(a, b, merge))
    out = lambda i, j, merge=merge, params=params: layer.apply(params, networks.join_context(a[i], b[j], merge))
    interaction = out(0, 0) + out(1, 1) - out(0, 1) - out(1, 0)
    assert (float(jnp.max(jnp.abs(interaction))) < 1e-5) is separable
  assert networks.join_context(a, b, "concat").shape == (2, 12)
  np.testing.assert_allclose(networks.join_context(a, None, "concat"), jax.nn.elu(a))


def test_iterative_metavae_routes_each_loss_to_its_parameters():
  """The summary network and the iterative encoder follow the mean over steps of -MetaELBO_t, the decoders
  -MetaELBO_T; and `encode` refines with the decoder it is given."""
  model = IterativeMetaVAE(
      networks.SummaryNetwork((8, 6)), networks.IterativeEncoder((8,), 3), networks.Decoder((8,), 12),
                           num_refinements=2)
  params, state = jax.jit(model.init, static_argnums=(1, 2))(jax.random.key(0), 2, (12,))
  data = jax.random.bernoulli(jax.random.key(1), 0.3, (2, 20, 12)).astype(jnp.float32)
  key = jax.random.key(2)
  (loss, (metrics, _)), grads = jax.jit(jax.value_and_grad(
      lambda p: model.loss(p, state, key, data, batch_size=4, set_size=3), has_aux=True))(params)
  batch_key, elbo_key = jax.random.split(key)
  queries, sets = sample_meta_batch(batch_key, data, batch_size=4, set_size=3)
  elbos = lambda p: model.refine(p["meta_inference"], p["decoders"], elbo_key, queries, sets).elbos

  @jax.jit
  def expected(p):  # one compiled program: the unjitted scans would each compile their body again
    return (elbos(p), jax.grad(lambda p: -jnp.mean(elbos(p)[1:]))(p)["meta_inference"],
            jax.grad(lambda p: -jnp.mean(elbos(p)[-1]))(p)["decoders"])

  values, encoder_grads, decoder_grads = expected(params)
  np.testing.assert_allclose(loss, -jnp.mean(values[-1]), rtol=1e-5)
  assert np.isclose(metrics["encoder_loss"], -jnp.mean(values[1:]), rtol=1e-5)
  for got, want in ((grads["meta_inference"], encoder_grads), (grads["decoders"], decoder_grads)):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

  @jax.jit
  def codes_and_refined(p):
    codes = [model.encode(p, {}, key, sets[0], queries[0], decoder_index=k) for k in (0, 1)]
    return codes, model.refine(p["meta_inference"], p["decoders"], key, queries[:1], sets[:1], jnp.array([0]))

  codes, refined = codes_and_refined(params)
  np.testing.assert_allclose(codes[0], refined.posteriors.mean[-1, 0], rtol=1e-5, atol=1e-6)
  assert not np.allclose(codes[0], codes[1])
