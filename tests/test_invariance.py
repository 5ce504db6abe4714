"""The MNIST transformation-invariance experiment end to end on its quick config, for every model."""

import functools
import json
import math
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import linen as nn

from experiments import invariance, trainer, variants
from experiments.configs import mnist_rotate, mnist_scale, norb_lighting
from meta_amortized import networks
from tests.conftest import MNIST_MANUAL_DIR


def _check_rotation_results(workdir, model, num_steps):
  results = json.loads((workdir / "results.json").read_text())
  assert results["model"] == model and results["split"] == "sparse" and results["transform"] == "rotate"
  assert len(results["unseen_values"]) == 13 == len(results["test_accuracy"])
  assert all(0.0 <= a <= 1.0 for a in results["test_accuracy"])
  assert len(results["code_class_separation"]) == 13 and all(s > 0.0 for s in results["code_class_separation"])
  latent_dim = mnist_rotate.get_config("quick").latent_dim
  assert all(1.0 <= r <= latent_dim + 1e-4 for r in results["code_participation_ratio"])
  assert math.isclose(results["mean_test_accuracy"], sum(results["test_accuracy"]) / 13)
  assert results["train_steps"] == num_steps
  assert (workdir / "accuracy.png").stat().st_size > 0
  assert json.loads((workdir / f"results_at_step_{num_steps}.json").read_text()) == results
  if "fixed_set_test_accuracy" in results:  # config.fixed_set_probe
    assert len(results["fixed_set_test_accuracy"]) == 13 and all(0.0 <= a <= 1.0 for a in
                                                                 results["fixed_set_test_accuracy"])
    assert math.isclose(results["mean_fixed_set_test_accuracy"], sum(results["fixed_set_test_accuracy"]) / 13)
  assert results.get("latent_prior") == ("learned" if model in ("ns", "vhe", "vhe_vampprior") else None)
  assert results.get("decoder_input") == ("z_and_c" if model in ("ns", "vhe", "vhe_vampprior") else None)
  assert results.get("encoder_input") == ("x_and_c" if model in ("ns", "vhe", "vhe_vampprior") else None)
  assert results.get("decoders") == ("per_distribution" if model == "meta_vae" else None)
  assert results.get("activation") == ("relu" if model in ("meta_vae", "vae") else None)
  if model in invariance.META_VAES:  # the decoder chosen for each unseen distribution, and its MetaELBO there
    assert ("unseen_decoder_values" in results) == (model != "vae")  # the VAE has one decoder
    assert set(results.get("unseen_decoder_values", [])) <= set(results["training_values"])
    assert len(results["unseen_elbo"]) == 13 and all(-1000.0 < e < 0.0 for e in results["unseen_elbo"])
    assert math.isclose(results["mean_unseen_elbo"], sum(results["unseen_elbo"]) / 13)
  if model == "meta_vae_iterative":  # from the prior (step 0) to past the T of training
    assert len(results["unseen_elbo_by_step"]) == 4 and results["unseen_elbo_by_step"][0] < results["mean_unseen_elbo"]
  return results


# The MetaVAE and the VHE run end to end in the mnist_tables test below (and the MetaVAE in the notebook's), the VAE
# in the VAE's Table 1 test.
@pytest.mark.parametrize("model", ["ns", "vhe_vampprior", "meta_vae_iterative"])
def test_invariance_end_to_end(model, tmp_path, mnist_data_dir):
  config = mnist_rotate.get_config("quick")
  config.model = model
  config.fixed_set_probe = None if model == "ns" else "per_split"  # the NS's set is its chunk of queries
  # The MetaVAE (in mnist_tables) borrows by the nearest summary; the iterative one here by its refined bound.
  config.unseen_decoder = "best_bound" if model == "meta_vae_iterative" else "nearest_summary"
  config.data.manual_dir = str(MNIST_MANUAL_DIR)
  config.data.data_dir = str(mnist_data_dir)
  invariance.run(config, tmp_path)
  results = _check_rotation_results(tmp_path, model, config.num_steps)
  assert results.get("unseen_decoder") == ("best_bound" if model == "meta_vae_iterative" else None)
  assert ("fixed_set_test_accuracy" in results) == (model != "ns")


@pytest.mark.parametrize(("get_config", "overrides", "message"), [
    (mnist_scale.get_config, {"split": "random"}, r"config.split='random' is not allowed; expected one of"),
    (mnist_scale.get_config, {"model": "iwae"},
     r"config.model='iwae' .* \['meta_vae', 'ns', 'vhe', 'vhe_vampprior', 'meta_vae_iterative', 'vae'\]"),
    (mnist_scale.get_config, {"model": "meta_vae_iterative", "gradient_encoding": "sign"},
     r"config.gradient_encoding='sign' is not allowed"),
    (mnist_scale.get_config, {"latent_prior": "flat"}, r"config.latent_prior='flat' .* \['learned', 'standard'\]"),
    (mnist_scale.get_config, {"decoders": "tied"}, r"config.decoders='tied' .* \['per_distribution', 'shared'\]"),
    (mnist_scale.get_config, {"decoders": "shared", "model": "vhe"},
     r"config.decoders='shared' is not allowed with config.model='vhe'"),
    (mnist_scale.get_config, {"decoder_input": "c"}, r"config.decoder_input='c' .* \['z_and_c', 'z'\]"),
    (mnist_scale.get_config, {"decoder_input": "z"},
     r"config.decoder_input='z' is not allowed with config.model='meta_vae'"),
    (mnist_scale.get_config, {"encoder_input": "c"}, r"config.encoder_input='c' .* \['x_and_c', 'x'\]"),
    (mnist_scale.get_config, {"encoder_input": "x", "model": "vae"},
     r"config.encoder_input='x' is not allowed with config.model='vae'"),
    (mnist_scale.get_config, {"context_merge": "product"}, r"config.context_merge='product' .* \['sum', 'concat'\]"),
    (mnist_scale.get_config, {"context_merge": "concat"},
     r"config.context_merge='concat' is not allowed with config.model='meta_vae'"),
    (norb_lighting.get_config, {"model": "vae"}, r"config.model='vae' is not allowed with config.dataset='smallnorb'"),
    (mnist_scale.get_config, {"activation": "tanh"}, r"config.activation='tanh' .* \['relu', 'elu'\]"),
    (mnist_scale.get_config, {"activation": "elu", "model": "vhe"},
     r"config.activation='elu' is not allowed with config.model='vhe'"),
    (norb_lighting.get_config, {"activation": "elu"}, r"config.activation='elu' is not allowed .* on 'smallnorb'"),
    (mnist_scale.get_config, {"fixed_set_probe": "one"}, r"config.fixed_set_probe='one' .* \['per_split', 'shared'\]"),
    (mnist_scale.get_config, {"fixed_set_probe": "shared", "model": "ns"},
     r"config.fixed_set_probe='shared' is not allowed with config.model='ns'"),
    (mnist_scale.get_config, {"unseen_decoder": "closest"},
     r"config.unseen_decoder='closest' .* \['nearest_summary', 'best_bound'\]"),
    (mnist_scale.get_config, {"unseen_decoder": "best_bound", "model": "meta_vae", "decoders": "shared"},
     r"config.unseen_decoder='best_bound' is not allowed with config.model='meta_vae', config.decoders='shared'"),
    (norb_lighting.get_config, {"unseen_decoder": "best_bound"},
     r"config.unseen_decoder='best_bound' is not allowed .* on 'smallnorb'"),
    (mnist_scale.get_config, {"data.num_train_examples": 70000},
     r"config.data.num_train_examples=70000 .* \[1, 60000\]"),
], ids=lambda v: ",".join(v) if isinstance(v, dict) else None)
def test_invariance_config_errors_name_the_field(get_config, overrides, message, tmp_path):
  config = get_config("quick")
  config.update_from_flattened_dict(overrides)
  with pytest.raises(trainer.ConfigError, match=message):
    invariance.run(config, tmp_path)


@pytest.mark.parametrize("get_config", [mnist_scale.get_config, norb_lighting.get_config], ids=["mlp", "conv"])
def test_the_input_options_build_baselines_whose_networks_ignore_c(get_config):
  config = get_config("quick")
  config.model = "vhe"
  for decoder_input, encoder_input in (("z_and_c", "x_and_c"), ("z", "x_and_c"), ("z_and_c", "x")):
    config.decoder_input, config.encoder_input = decoder_input, encoder_input
    model = variants.build_model(config, examples_per_distribution=100)
    model = model.model if config.dataset == "smallnorb" else model
    assert model.decoder.use_context is (decoder_input == "z_and_c")
    assert model.latent_posterior.use_context is (encoder_input == "x_and_c")
    assert variants.options(config) == {"latent_prior": "learned", "decoder_input": decoder_input,
                                        "encoder_input": encoder_input, "context_merge": "sum",
                                        "likelihood_clamp": "none", "init": "flax"}


@pytest.mark.parametrize(("model_name", "merge", "count"), [
    # The original code (mhw32/meta-inference-public, bfe3de9) concatenates: its Statistician and HomoEncoder have
    # 8,284,104 parameters, its HomoEncoder_VampPrior 12,204,104 (500 pseudo-sets of 10 x 784 on top).
    ("ns", "concat", 8_284_104), ("vhe", "concat", 8_284_104), ("vhe_vampprior", "concat", 12_204_104),
    # Summing leaves out the layers' c halves after the join: 400 x 400 in q(z | x, c), 400 x 4096 in p(x | z, c).
    ("ns", "sum", 8_284_104 - 400 * 400 - 400 * 4096), ("vhe", "sum", 8_284_104 - 400 * 400 - 400 * 4096),
])
def test_concatenated_context_gives_the_original_codes_baselines(model_name, merge, count):
  config = mnist_scale.get_config()
  config.model, config.context_merge = model_name, merge
  model = variants.build_model(config)
  shapes = jax.eval_shape(model.init, jax.random.key(0))
  assert sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes)) == count


@pytest.mark.parametrize("model_name", ["meta_vae", "vae"])
def test_the_activation_option_gives_the_same_parameters_elu_in_place_of_relu(model_name):
  config = mnist_scale.get_config("quick")
  config.model = model_name
  models = {}
  for activation in ("relu", "elu"):
    config.activation = activation
    models[activation] = variants.build_model(config, examples_per_distribution=100)
    assert variants.options(config)["activation"] == activation
  params, _ = models["relu"].init(jax.random.key(0), 2)
  assert jax.tree.map(jnp.shape, models["elu"].init(jax.random.key(0), 2)[0]) == jax.tree.map(jnp.shape, params)
  queries = jax.random.uniform(jax.random.key(1), (3, 784))
  sets = jax.random.uniform(jax.random.key(2), (3, 4, 784))
  z = jax.random.normal(jax.random.key(3), (3, config.latent_dim))
  decoder = jax.tree.map(lambda p: p[0], params["decoders"])
  # The encoder MLP's and the decoder's hidden layers, by hand from the same parameters.
  encoder = params["meta_inference"]["params"]
  encoder = encoder["encoder"] if model_name == "vae" else encoder["aggregation"]
  inputs = queries if model_name == "vae" else jnp.concatenate(
      [queries, models["relu"].meta_inference.apply(params["meta_inference"], sets, method="summarize")], -1)
  for activation, expected in (("relu", jax.nn.relu), ("elu", jax.nn.elu)):
    model = models[activation]
    posterior = model.meta_inference.apply(params["meta_inference"], sets, queries)
    np.testing.assert_allclose(posterior.mean, _mlp(encoder, inputs, expected)[:, :config.latent_dim], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(model.decoder.apply(decoder, z), _mlp(decoder["params"], z, expected), rtol=1e-5,
                               atol=1e-6)


def _mlp(params, x, activation):
  """Dense layers in order, `activation` between them (the layout of `networks.MLP`)."""
  layers = params["MLP_0"] if "MLP_0" in params else params
  names = sorted(layers, key=lambda name: int(name.rsplit("_", 1)[1]))
  for i, name in enumerate(names):
    x = x @ layers[name]["kernel"] + layers[name]["bias"]
    x = activation(x) if i < len(names) - 1 else x
  return x


class _PixelMass:
  """A stand-in model whose code is the total grey level of the query: invariant to half turns, not to scaling."""

  def encode(self, params, state, key, sets, queries):
    return jnp.sum(queries, axis=-1, keepdims=True)


def test_code_distance_is_zero_for_an_invariant_code_and_positive_otherwise():
  images = jax.random.uniform(jax.random.key(0), (20, 28, 28))
  config = mnist_rotate.get_config("quick")
  config.eval_batch_size = 10
  model = _PixelMass()
  assert invariance.code_distance(model, None, jax.random.key(1), images, "rotate", (180.0, -180.0),
                                  config=config) == pytest.approx(0.0, abs=1e-4)
  assert invariance.code_distance(model, None, jax.random.key(1), images, "scale", (0.5, 1.9), config=config) > 10.0


def test_code_spread_is_the_mean_distance_between_the_codes_of_neighbouring_images():
  images = jax.random.uniform(jax.random.key(0), (20, 28, 28))
  config = mnist_rotate.get_config("quick")
  config.eval_batch_size = 10
  masses = jnp.sum(images, axis=(1, 2))
  assert invariance.code_spread(_PixelMass(), None, jax.random.key(1), images, config=config) == pytest.approx(
      float(jnp.mean(jnp.abs(masses - jnp.roll(masses, 1)))), rel=1e-5)


class _SetMass:
  """A stand-in model whose code is the mean grey level of its set, whatever the query."""

  def encode(self, params, state, key, sets, queries):
    return jnp.mean(sets, axis=(-2, -1))[:, None]


def test_code_distance_takes_the_sets_from_the_distribution_asked_for():
  images = jax.random.uniform(jax.random.key(0), (10, 28, 28))
  config = mnist_rotate.get_config("quick")
  config.eval_batch_size, config.set_size = 5, 10  # every set holds all 10 images: its mean is exact
  distance = functools.partial(invariance.code_distance, _SetMass(), None, jax.random.key(1), images, "scale", (1.9,),
                               config=config)
  assert distance(sets="base") == pytest.approx(0.0, abs=1e-6)
  assert distance(sets="own") > 0.1  # scale 1.9 shrinks the images into black padding: darker sets
  with pytest.raises(ValueError, match="sets='other'"):
    distance(sets="other")
  config.model = "ns"  # the NS encodes each chunk with itself as the set: no other set to take
  with pytest.raises(ValueError, match="config.model='ns'"):
    invariance.embed(_SetMass(), None, jax.random.key(1), images, config=config, set_images=images)


def test_one_set_is_the_set_of_every_query_whatever_the_chunks():
  images = jax.random.uniform(jax.random.key(0), (12, 784))
  config = mnist_rotate.get_config("quick")
  config.set_size = 3
  for size in (4, 5, 12):
    config.eval_batch_size = size
    codes = invariance.embed(_SetMass(), None, jax.random.key(1), images, config=config, one_set=images[7:10])
    np.testing.assert_allclose(codes[:, 0], jnp.full(12, jnp.mean(images[7:10])), rtol=1e-6)
  fresh = invariance.embed(_SetMass(), None, jax.random.key(1), images, config=config)[:, 0]
  assert np.ptp(fresh) > 0.01  # a set per query: the codes differ
  with pytest.raises(ValueError, match=r"one_set of shape \(4, 784\) is not a set of config.set_size=3"):
    invariance.embed(_SetMass(), None, jax.random.key(1), images, config=config, one_set=images[:4])
  config.model = "ns"
  with pytest.raises(ValueError, match="config.model='ns'.*one_set"):
    invariance.embed(_SetMass(), None, jax.random.key(1), images, config=config, one_set=images[:3])


class _LabelCode:
  """A stand-in model whose code is the query's first 10 pixels, where the test below writes its label."""

  def encode(self, params, state, key, sets, queries):
    return queries[:, :10]

  def bound(self, params, key, queries, sets, decoder_index):
    """A stand-in bound that shows its decoder: minus each query's mean grey level, less the decoder's index."""
    return -jnp.mean(queries, axis=-1) - decoder_index[:, None]


def test_evaluate_reads_a_code_that_carries_the_label():
  labels = jnp.arange(200) % 10
  images = jax.random.uniform(jax.random.key(0), (200, 784)).at[:, :10].add(5.0 * jax.nn.one_hot(labels, 10))
  halves = (images[:100], labels[:100]), (images[100:], labels[100:])
  meta = invariance.MetaSplit(None, (0.0,), (10.0, 20.0), lambda i: halves, num_classes=10)
  state = types.SimpleNamespace(params=None, model_state=None)
  config = mnist_rotate.get_config("quick")
  config.model = "vhe"
  results = invariance.evaluate(_LabelCode(), state, meta, config)
  assert results["test_accuracy"] == [1.0, 1.0] and results["mean_test_accuracy"] == 1.0
  # Class means 5 apart along each one-hot axis against uniform noise of variance 1/12 in every code dimension.
  assert all(s > 10.0 for s in results["code_class_separation"])
  assert "unseen_elbo" not in results  # only a MetaVAE borrows a decoder
  assert "fixed_set_test_accuracy" not in results  # off by default
  with pytest.raises(ValueError, match="config.model='vhe' on 'mnist' .* takes no train_summaries"):
    invariance.evaluate(_LabelCode(), state, meta, config, jnp.zeros((1, 3)))
  config.model = "meta_vae"
  with pytest.raises(ValueError, match="config.model='meta_vae' on 'mnist' .* needs train_summaries"):
    invariance.evaluate(_LabelCode(), state, meta, config)
  # A MetaVAE with one shared decoder borrows none: its MetaELBO on the unseen values is the shared decoder's.
  config.decoders = "shared"
  results = invariance.evaluate(_LabelCode(), state, meta, config)
  assert "unseen_decoder_values" not in results and results["test_accuracy"] == [1.0, 1.0]
  expected = -float(jnp.mean(images[100:100 + config.unseen_elbo_examples]))
  np.testing.assert_allclose(results["unseen_elbo"], [expected, expected], rtol=1e-6)
  assert results["mean_unseen_elbo"] == pytest.approx(expected, rel=1e-6)


class _GreyLevelDecoders(_LabelCode):
  """A stand-in MetaVAE whose decoder k bounds a query best where ten times its mean grey level is k."""

  def bound(self, params, key, queries, sets, decoder_index):
    return -jnp.abs(10.0 * jnp.mean(queries, axis=-1) - decoder_index[:, None])


def test_the_best_bound_decoder_is_chosen_on_the_training_images_and_scores_the_test_images():
  labels = jnp.arange(100) % 10
  label_pixels = 5.0 * jax.nn.one_hot(labels, 784)  # adds 5 / 784 to each image's mean grey level

  def split(level):
    return jnp.full((100, 784), level) + label_pixels, labels

  # Ten times the mean grey level: 1.06 and 3.06 in the unseen values' training splits, 2.06 and 0.06 in their
  # test splits, so the decoders best on the test images (2 and 0) are not the ones chosen (1 and 3).
  splits = {0: (split(0.1), split(0.2)), 1: (split(0.3), split(0.0))}
  meta = invariance.MetaSplit(None, (0.0, 15.0, 30.0, 45.0, 60.0), (10.0, 20.0), splits.__getitem__,
                              num_classes=10)
  state = types.SimpleNamespace(params=None, model_state=None)
  config = mnist_rotate.get_config("quick")
  config.model, config.unseen_decoder = "meta_vae", "best_bound"
  results = invariance.evaluate(_GreyLevelDecoders(), state, meta, config)
  assert results["unseen_decoder"] == "best_bound"
  assert results["unseen_decoder_values"] == [15.0, 45.0]
  tenfold_test_level = 10.0 * (jnp.array([0.2, 0.0]) + 5.0 / 784)
  np.testing.assert_allclose(results["unseen_elbo"], -jnp.abs(tenfold_test_level - jnp.array([1.0, 3.0])),
                             rtol=1e-5)
  with pytest.raises(ValueError, match="config.unseen_decoder='best_bound' takes no train_summaries"):
    invariance.evaluate(_GreyLevelDecoders(), state, meta, config, jnp.zeros((5, 3)))
  bounds = invariance.decoder_bounds(None, jax.random.key(0), split(0.3)[0], model=_GreyLevelDecoders(),
                                     num_decoders=5, set_size=config.set_size, num_queries=100)
  np.testing.assert_allclose(bounds, -jnp.abs(10.0 * (0.3 + 5.0 / 784) - jnp.arange(5.0)), rtol=1e-5)


class _SplitSignedLabelCode:
  """A stand-in model whose code is the query's first 10 pixels, negated where the set's pixel 10 is 1."""

  def encode(self, params, state, key, sets, queries):
    return queries[:, :10] * (1.0 - 2.0 * jnp.mean(sets[..., 10], axis=-1, keepdims=True))


def test_the_fixed_set_probes_take_their_sets_from_the_splits_named():
  labels = jnp.arange(200) % 10
  images = jax.random.uniform(jax.random.key(0), (200, 784)).at[:, :10].add(5.0 * jax.nn.one_hot(labels, 10))
  images = images.at[:, 10].set(jnp.arange(200) >= 100)  # pixel 10 marks the test split
  halves = (images[:100], labels[:100]), (images[100:], labels[100:])
  meta = invariance.MetaSplit(None, (0.0,), (10.0,), lambda i: halves, num_classes=10)
  state = types.SimpleNamespace(params=None, model_state=None)
  config = mnist_rotate.get_config("quick")
  config.model = "vhe"
  accuracy = {}
  for fixed_set_probe in ("per_split", "shared"):
    config.fixed_set_probe = fixed_set_probe
    results = invariance.evaluate(_SplitSignedLabelCode(), state, meta, config)
    assert results["fixed_set_probe"] == fixed_set_probe
    assert results["mean_fixed_set_test_accuracy"] == results["fixed_set_test_accuracy"][0]
    accuracy[fixed_set_probe] = results["fixed_set_test_accuracy"][0]
  # Test codes with sets from the test split are negated: the probe fitted to the training codes reads them
  # wrongly, as it does the fresh sets' (from each split, as the protocol draws them); with the training split's
  # set for both, it reads them all.
  assert results["test_accuracy"][0] < 0.1 and accuracy["per_split"] < 0.1 and accuracy["shared"] == 1.0


def test_mnist_tables_runs_the_missing_cells_and_writes_the_tables(tmp_path, mnist_data_dir):
  from experiments import mnist_tables
  from experiments.configs import mnist_tables as tables_config

  config = tables_config.get_config("quick")
  config.run.data.manual_dir = str(MNIST_MANUAL_DIR)
  config.run.data.data_dir = str(mnist_data_dir)
  results = mnist_tables.run(config, tmp_path)
  assert set(results) == {"rotate/sparse/meta_vae", "rotate/sparse/vhe"}
  for model in ("meta_vae", "vhe"):
    _check_rotation_results(tmp_path / "rotate" / "sparse" / model, model, config.run.num_steps)
  table2 = (tmp_path / "table2.md").read_text()
  assert "| rotate | " in table2 and "(20 steps)" in table2 and "0.885 / 0.83 / 0.793" in table2
  own_sets, base_sets = [line for line in (tmp_path / "table1.md").read_text().splitlines()
                          if line.startswith("| rotate")]
  distances = [float(v) for v in own_sets.split("|")[2:5]] + [float(v) for v in base_sets.split("|")[2:7]]
  assert all(math.isfinite(d) and d >= 0 for d in distances)
  # results.json keeps the same distances, for `experiments.report record`, and Table 2's accuracies.
  recorded = json.loads((tmp_path / "results.json").read_text())
  kept = recorded["table1"]["rotate"]
  assert [f"{d:.2f}" for d in (*kept["own_sets"], *kept["base_sets"], kept["fresh_sets_only"],
                               kept["different_images"])] == [v.strip() for v in (*own_sets.split("|")[2:5],
                                                                                  *base_sets.split("|")[2:7])]
  assert recorded["mean_test_accuracy"] == results
  for figure in ("figure7_sparse.png", "table2_bars.png", "table1_bars.png", "accuracy_vs_steps.png"):
    assert (tmp_path / figure).stat().st_size > 0
  # The curve: each cell was evaluated at the budget of 10 steps on its way to 20, and both points are kept.
  curve = [line for line in (tmp_path / "accuracy_vs_steps.md").read_text().splitlines() if line.startswith("| rot")]
  assert len(curve) == 2 and "| 10 | 20 |" in (tmp_path / "accuracy_vs_steps.md").read_text()
  for line, model in zip(curve, ("meta_vae", "vhe")):
    at_10 = json.loads((tmp_path / "rotate" / "sparse" / model / "results_at_step_10.json").read_text())
    final = results[f"rotate/sparse/{model}"]
    assert at_10["train_steps"] == 10 and f"| {at_10['mean_test_accuracy']:.3f} | {final:.3f} |" in line
  # The wall-clock minutes behind each cell: every training window and the evaluation at 20 steps were recorded.
  rows = {row[2]: row[3:] for row in (line.split(" | ") for line in (tmp_path / "wall_times.md").read_text()
                                      .splitlines() if line.startswith("| rotate"))}
  for model in ("meta_vae", "vhe"):
    seconds = mnist_tables.wall_time(tmp_path / "rotate" / "sparse" / model, model, 20, config.run.log_every)
    minutes = [seconds[k] / 60 for k in ("data_seconds", "train_seconds", "evaluation_seconds")]
    assert min(minutes) > 0 and seconds["devices"] == f"{jax.device_count()} x cpu"
    assert rows[model] == ["20", *(f"{m:.2f}" for m in (*minutes, sum(minutes))), f"{seconds['devices']} |"]
  # A second call collects the existing cells instead of training them again.
  before = (tmp_path / "rotate" / "sparse" / "vhe" / "metrics.jsonl").read_text()
  assert mnist_tables.run(config, tmp_path) == results
  assert (tmp_path / "rotate" / "sparse" / "vhe" / "metrics.jsonl").read_text() == before
  # A run from before the training windows were logged has its minutes "not recorded", not undercounted.
  cell = tmp_path / "rotate" / "sparse" / "vhe"
  timed = [line for line in (cell / "wall_times.jsonl").read_text().splitlines() if "seconds" not in json.loads(line)]
  (cell / "wall_times.jsonl").write_text("".join(line + "\n" for line in timed))
  assert mnist_tables.wall_time(cell, "vhe", 20, config.run.log_every) is None
  config.budgets = (10, 0)
  with pytest.raises(trainer.ConfigError, match=r"config.budgets=\(10, 0\) is not allowed: \[0\]"):
    mnist_tables.run(config, tmp_path)


def test_table1_of_the_vae_shows_codes_that_ignore_the_set(tmp_path, mnist_data_dir):
  from experiments import mnist_tables
  from experiments.configs import mnist_tables as tables_config

  config = tables_config.get_config("quick")
  config.run.data.manual_dir = str(MNIST_MANUAL_DIR)
  config.run.data.data_dir = str(mnist_data_dir)
  config.models, config.budgets, config.table1_model = ("vae",), (), "vae"
  mnist_tables.run(config, tmp_path)
  _check_rotation_results(tmp_path / "rotate" / "sparse" / "vae", "vae", config.run.num_steps)
  own_sets, base_sets = [line.split("|")[2:6] for line in (tmp_path / "table1.md").read_text().splitlines()
                         if line.startswith("| rotate")]
  # Whatever the sets, the same codes: own and base sets give the same distances (then the paper's row, and the
  # distance that fresh sets make: none at all).
  assert own_sets[:3] == base_sets[:3] and min(map(float, own_sets[:3])) > 0.0 and float(base_sets[3]) == 0.0
  config.table1_model = "ns"
  with pytest.raises(trainer.ConfigError, match=r"config.table1_model='ns' .* \['meta_vae', 'vae'\]"):
    mnist_tables.run(config, tmp_path)
  # A cell resumed, collected, or collected into Table 1 under another config than it was trained with: an error
  # naming the field, not another model's results under this config's name, or a model rebuilt with the other
  # activation.
  config.table1_model, config.run.activation = "vae", "elu"
  for config.run_missing in (True, False):
    with pytest.raises(trainer.ConfigError, match=r"config.activation='elu' \(trained with 'relu'\)"):
      mnist_tables.run(config, tmp_path)
  config.models = ("meta_vae",)  # not trained, so not collected: Table 1's own check of the VAE cell
  with pytest.raises(trainer.ConfigError, match=r"config.activation='elu' \(trained with 'relu'\)"):
    mnist_tables.run(config, tmp_path)


# The conv NS and VHE differ from these only in bounds that tests/test_conv.py trains.
@pytest.mark.parametrize("model", ["meta_vae", "vhe_vampprior"])
def test_norb_experiment_end_to_end(model, tmp_path, norb_lighting_dirs):
  """The conv models train on Small NORB's lighting axis (files in the dataset's format) and are probed."""
  manual_dir, data_dir = norb_lighting_dirs
  config = norb_lighting.get_config("quick")
  config.model = model
  config.data.manual_dir, config.data.data_dir = str(manual_dir), str(data_dir)
  invariance.run(config, tmp_path / "run")
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert (results["model"], results["split"], results["transform"]) == (model, "sparse", "lighting")
  assert results["training_values"] == [1, 4] and results["unseen_values"] == [0, 2, 3, 5]
  assert len(results["test_accuracy"]) == 4 and all(0.0 <= a <= 1.0 for a in results["test_accuracy"])
  assert results["train_steps"] == config.num_steps
  # Resuming a finished run restores the batch statistics with the parameters and gives the same results.
  invariance.run(config, tmp_path / "run")
  assert json.loads((tmp_path / "run" / "results.json").read_text()) == results


def test_norb_config_errors_name_the_field(tmp_path):
  config = norb_lighting.get_config("quick")
  config.transform = "pose"
  with pytest.raises(trainer.ConfigError, match=r"config.transform='pose' .* \['azimuth', 'elevation', 'lighting'\]"):
    invariance.run(config, tmp_path)
  config = norb_lighting.get_config("quick")
  config.model = "meta_vae_iterative"
  with pytest.raises(trainer.ConfigError, match=r"config.model='meta_vae_iterative' is not allowed with "
                                                r"config.dataset='smallnorb'"):
    invariance.run(config, tmp_path)
  config = norb_lighting.get_config("quick")
  config.conv_features = (4, 4)
  with pytest.raises(trainer.ConfigError, match=r"config.conv_features=\(4, 4\) .* 9 conv layers"):
    invariance.run(config, tmp_path)


def test_a_set_larger_than_a_distribution_is_refused_before_training(tmp_path, norb_lighting_dirs):
  config = mnist_scale.get_config("quick")  # 300 training and 100 test images
  config.set_size = 150
  with pytest.raises(trainer.ConfigError, match=r"config.set_size=150 is not allowed with "
                                                r"config.data.num_test_examples=100"):
    invariance.run(config, tmp_path / "mnist")
  manual_dir, data_dir = norb_lighting_dirs  # 4 train and 2 test pairs (8 and 4 images) of each lighting value
  config = norb_lighting.get_config("quick")
  config.data.manual_dir, config.data.data_dir = str(manual_dir), str(data_dir)
  config.set_size = 5
  with pytest.raises(trainer.ConfigError, match=r"config.set_size=5 is not allowed: these distributions have fewer "
                                                r"images \{'unseen 0 test': 4"):
    invariance.run(config, tmp_path / "norb")
  assert not (tmp_path / "norb" / "checkpoints").exists()


@pytest.mark.parametrize("get_config", [mnist_scale.get_config, norb_lighting.get_config], ids=["mnist", "norb"])
def test_every_registered_switch_defaults_to_the_papers_choice_and_only_its_models_take_it(get_config):
  config = get_config("quick")
  for switch in variants.SWITCHES:
    assert config[switch.field] == switch.default, switch.field
  for name, model in variants.MODELS.items():
    if config.dataset not in model.datasets:
      continue
    config.model = name
    assert set(variants.options(config)) == {s.field for s in variants.SWITCHES if name in s.models}
    for switch in variants.SWITCHES:
      for value in switch.choices[1:]:
        changed = config.copy_and_resolve_references()
        changed[switch.field] = value
        if name in switch.models and config.dataset in switch.datasets:
          variants.check(changed)
          assert variants.options(changed)[switch.field] == value
        else:
          with pytest.raises(trainer.ConfigError, match=rf"config.{switch.field}={value!r} is not allowed with "
                                                        rf"config.model={name!r} on {config.dataset!r}"):
            variants.check(changed)


def test_the_original_codes_init_and_clamp_are_switches_of_the_baselines():
  config = mnist_scale.get_config("quick")
  config.model, config.init, config.likelihood_clamp = "vhe_vampprior", "xavier_sqrt2", "1e-7"
  variants.check(config)
  model = variants.build_model(config, examples_per_distribution=100)
  assert model.likelihood_clamp == 1e-7
  params, _ = model.init(jax.random.key(0))
  default = variants.build_model(_with(config, init="flax", likelihood_clamp="none"), examples_per_distribution=100)
  flax_params, _ = default.init(jax.random.key(0))
  np.testing.assert_array_equal(params["pseudo_inputs"], flax_params["pseudo_inputs"])  # not a Dense layer
  kernels = [(p, x) for p, x in jax.tree_util.tree_leaves_with_path(params) if p[-1].key == "kernel"]
  assert kernels
  # Biases start at zero whatever their values were (Flax's are zero too, so shift them first to see it).
  shifted = jax.tree_util.tree_map_with_path(lambda p, x: x + 1.0 if p[-1].key == "bias" else x, params)
  again = networks.reinitialize_dense(shifted, jax.random.key(3), nn.initializers.variance_scaling(2.0, "fan_avg",
                                                                                                   "normal"))
  biases = [x for p, x in jax.tree_util.tree_leaves_with_path(again) if p[-1].key == "bias"]
  assert biases and all(float(jnp.max(jnp.abs(b))) == 0.0 for b in biases)
  # The clamp reaches the likelihood: a pixel the decoder calls certain and wrong costs log(1e-7), not more.
  x = jnp.ones((1, 784))
  z, c = jnp.zeros((1, config.latent_dim)), jnp.zeros((1, config.context_dim))
  decoder = {"params": jax.tree.map(jnp.zeros_like, params["decoder"]["params"])}
  output = max(decoder["params"], key=lambda name: decoder["params"][name]["bias"].shape[-1])  # the 784 logits
  decoder["params"][output]["bias"] = jnp.full_like(decoder["params"][output]["bias"], -40.0)
  assert float(model.log_likelihood({**params, "decoder": decoder}, x, z, c)[0]) == pytest.approx(784 * np.log(1e-7),
                                                                                                 rel=1e-4)
  widest = max(kernels, key=lambda item: item[1].size)[1]  # xavier_normal, gain sqrt 2: std 2 / sqrt(fan_in + fan_out)
  assert float(jnp.std(widest)) == pytest.approx(2 / np.sqrt(sum(widest.shape)), rel=0.05)
  config.model = "meta_vae"
  with pytest.raises(trainer.ConfigError, match="config.init='xavier_sqrt2' is not allowed"):
    variants.check(config)


def _with(config, **fields):
  config = ml_collections.ConfigDict(config.to_dict())
  config.update(fields)
  return config
