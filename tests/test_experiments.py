"""Each demonstration end to end on its quick config, and the pieces they rest on."""

import json
import math
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments import clustering, expfam, physics, trainer
from experiments.configs import clustering as clustering_config
from experiments.configs import expfam as expfam_config
from experiments.configs import physics as physics_config

REPO = pathlib.Path(__file__).resolve().parents[1]


def _finite_numbers(tree):
  if isinstance(tree, dict):
    return all(_finite_numbers(v) for v in tree.values())
  if isinstance(tree, list):
    return all(_finite_numbers(v) for v in tree)
  return not isinstance(tree, float) or math.isfinite(tree)


def test_clustering_end_to_end(tmp_path):
  results = clustering.run(clustering_config.get_config("quick"), tmp_path)
  written = json.loads((tmp_path / "results.json").read_text())
  assert written == json.loads(json.dumps(results))
  assert set(written["clustering_error"]) == {"vae", "meta_vae_N10", "meta_vae_N50"}
  assert all(0.0 <= e <= 0.5 for e in written["clustering_error"].values())
  assert set(written["mixtures_above_20pct_error"]) == set(written["clustering_error"])
  assert all(0.0 <= f <= 1.0 for f in written["mixtures_above_20pct_error"].values())
  assert (tmp_path / "clustering_error.png").stat().st_size > 0
  assert (tmp_path / "clustering_examples.png").stat().st_size > 0
  runs = {json.loads(line)["run"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()}
  assert runs == {"vae", "meta_vae_N10", "meta_vae_N50", "meta_vae_M10"}
  assert 0.0 <= written["clustering_error_by_num_train_mixtures"]["10"] <= 0.5
  # The errors split by the distance between the two means: the bins' counts cover the test mixtures, and their
  # mean weighted by the counts is each model's error (and the Bayes classifier's).
  split = written["error_by_separation"]
  assert sum(split["test_mixtures"]) == 50 and split["edges"] == list(clustering.SEPARATION_EDGES)
  for name, overall in (("meta_vae_N50", written["clustering_error"]["meta_vae_N50"]),
                        ("bayes_N50", written["bayes_error"]["set_conditional"]["N50"])):
    weighted = sum(n * e for n, e in zip(split["test_mixtures"], split[name]) if n) / 50
    assert weighted == pytest.approx(overall, rel=1e-5)
  fitted = written["training_decoders_by_separation"]
  assert sum(fitted["mixtures"]) == 50 and len(fitted["learned_separation"]) == len(clustering.SEPARATION_EDGES)


def test_clustering_runs_in_one_dimension(tmp_path):
  config = clustering_config.get_config("quick")
  config.data_dim = 1
  written = clustering.run(config, tmp_path)
  assert all(0.0 <= e <= 0.5 for e in written["clustering_error"].values())
  assert (tmp_path / "clustering_examples.png").stat().st_size > 0  # the figure of 1-D points, which crashed


def test_physics_end_to_end(tmp_path):
  config = physics_config.get_config("quick")
  results = physics.run(config, tmp_path)
  written = json.loads((tmp_path / "results.json").read_text())
  assert np.asarray(written["mse_grid"]["meta_vae"]).shape == (3, 3)
  assert np.asarray(written["mse_grid"]["vae"]).shape == (3, 3)
  assert written["lengths"] == list(config.test_lengths) and written["angles"] == list(config.test_angles)
  for key in ("meta_vae_mse_in_region", "vae_mse_in_region", "bayes_optimal_mse_in_region"):
    assert math.isfinite(written[key]) and written[key] >= 0
  assert _finite_numbers(written) and results["vae_mse_in_region"] == written["vae_mse_in_region"]
  assert (tmp_path / "physics_mse.png").stat().st_size > 0


def test_expfam_end_to_end(tmp_path):
  expfam.run(expfam_config.get_config("quick"), tmp_path)
  written = json.loads((tmp_path / "results.json").read_text())
  assert set(written["single"]) == {"gaussian", "lognormal", "exponential"}
  assert all(set(v) == {"meta_vae", "vae"} for v in written["single"].values())
  assert set(written["many"]) == {"gaussian", "lognormal", "exponential", "laplace", "weibull", "beta"}
  assert all(set(v) == {"meta_vae_90", "meta_vae_gaussian", "meta_vae_lognormal", "meta_vae_exponential"}
             for v in written["many"].values())
  assert _finite_numbers(written)
  assert (tmp_path / "expfam_single.png").stat().st_size > 0 and (tmp_path / "expfam_many.png").stat().st_size > 0


def test_bad_configs_fail_before_training(tmp_path):
  config = clustering_config.get_config("quick")
  config.num_distributions_per_step = 1000
  with pytest.raises(trainer.ConfigError, match=r"config.num_distributions_per_step=1000 .* at most"):
    clustering.run(config, tmp_path)
  config = physics_config.get_config("quick")
  config.test_angles = (45.0, 95.0)
  with pytest.raises(trainer.ConfigError, match=r"config.test_angles=\(45.0, 95.0\) .* angles in \(0, 90\)"):
    physics.run(config, tmp_path)
  assert not (tmp_path / "checkpoints").exists()
  with pytest.raises(ValueError, match="unknown config mode 'fast'"):
    expfam_config.get_config("fast")


def test_help_lists_the_config_fields():
  out = subprocess.run([sys.executable, "-m", "experiments.physics", "--help"], cwd=REPO, capture_output=True,
                       text=True, check=True).stdout
  assert "--config.set_size=64" in out and "--config.noise_std=0.02" in out and "--workdir" in out


def test_closed_form_descent_time_agrees_with_euler_integration():
  mu = jnp.array([0.05, 0.3, 0.6, 0.9, 0.99])
  for length, angle in [(2.0, 30.0), (10.0, 45.0), (19.0, 70.0)]:
    closed = physics.descent_time(mu, length, angle)
    euler = jax.jit(jax.vmap(lambda m, length=length, angle=angle: physics.euler_descent_time(m, length, angle)))(mu)
    np.testing.assert_allclose(euler, closed, atol=0.02)  # O(dt) with dt = 0.005
  # A box that never slides (tan 30 degrees = 0.58 < mu) is observed at the clock's limit.
  assert float(physics.descent_time(0.9, 2.0, 30.0)) == 10.0


def test_bayes_optimal_mse_is_small_where_time_is_informative_and_large_where_boxes_stick():
  config = physics_config.get_config("quick")
  config.test_simulations, config.bayes_grid = 400, 2000
  mse = lambda angle: float(physics.bayes_optimal_mse(jax.random.key(0), 10.0, angle, config))
  # At 45 degrees every mu < 1 slides and the time pins it down; at 20 degrees the boxes with
  # mu > tan 20 = 0.36 (64 %) never slide, and E[mu | stuck] leaves a variance of 0.64^2 / 12.
  assert mse(45.0) < 1e-3
  np.testing.assert_allclose(mse(20.0), 0.64 * 0.64**2 / 12, rtol=0.25)


def test_the_set_conditional_bayes_classifier_matches_exact_quadrature_in_one_dimension():
  # In 1-D the posterior of the two means given D is a 2-D integral: on a fine grid (label 0 the left mean, as
  # the Gibbs draws order them along D's axis) it is exact up to the grid, and the Gibbs classifier must agree.
  config = clustering_config.get_config()
  config.data_dim = 1  # and the experiment's Gibbs settings
  grid = jnp.linspace(-config.mean_range, config.mean_range, 501)
  low, high = jnp.meshgrid(grid, grid, indexing="ij")
  ordered = low < high

  def log_normal(x, m):  # (..., 1) points against grid means
    return -(x - m) ** 2 / (2 * config.component_variance)

  def exact(sets, queries, key):
    log_weights = jnp.sum(jnp.logaddexp(log_normal(sets[:, 0, None, None], low), log_normal(sets[:, 0, None, None],
                                                                                            high)), 0)
    log_weights = jnp.where(ordered, log_weights, -jnp.inf)
    score = lambda m: jax.nn.logsumexp(log_weights + log_normal(queries[:, 0, None, None], m), axis=(1, 2))
    return (score(high) > score(low)).astype(jnp.int32), score(high) - score(low)

  num, queries_per = 30, 40
  means = clustering.sample_mixture_means(jax.random.key(3), num, config)
  for set_size in (3, 10):
    points = jax.vmap(lambda k, m: clustering.sample_points(k, m, (queries_per + set_size,),
                                                            config.component_variance)[0])(
        jax.random.split(jax.random.key(set_size), num), means)
    data = (points[:, queries_per:], points[:, :queries_per], jax.random.split(jax.random.key(5), num))
    gibbs = jax.jit(jax.vmap(lambda s, q, k: clustering.bayes_predict(s, q, k, config)))(*data)
    quadrature, margin = jax.jit(lambda d: jax.lax.map(lambda a: exact(*a), d))(data)
    labels = jax.vmap(lambda k, m: clustering.sample_points(k, m, (queries_per + set_size,),
                                                            config.component_variance)[1])(
        jax.random.split(jax.random.key(set_size), num), means)[:, :queries_per]
    error = lambda predictions: float(jnp.mean(jax.vmap(clustering.permutation_free_error)(predictions, labels)))
    # They differ only at near ties (log predictive ratios within 0.2; Monte Carlo noise of the draws).
    assert float(jnp.max(jnp.where(gibbs != quadrature, jnp.abs(margin), 0.0))) < 0.2, set_size
    assert error(gibbs) == pytest.approx(error(quadrature), abs=0.01), set_size  # a near tie: 1/1200 each


def test_the_known_means_floor_is_the_error_of_the_known_means_classifier():
  config = clustering_config.get_config()
  means = clustering.sample_mixture_means(jax.random.key(0), 2000, config)
  points, labels = jax.vmap(lambda k, m: clustering.sample_points(k, m, (400,), config.component_variance))(
      jax.random.split(jax.random.key(1), 2000), means)
  nearer_second = (jnp.sum((points - means[:, None, 1]) ** 2, -1) < jnp.sum((points - means[:, None, 0]) ** 2, -1))
  empirical = float(jnp.mean(nearer_second != labels.astype(bool)))
  assert clustering.known_means_error(means, config) == pytest.approx(empirical, rel=0.05)


@pytest.mark.parametrize("labels", ["matched", "anchored", "anchored_farthest"])
def test_a_decoder_scores_the_same_whichever_order_its_means_are_in(labels):
  config = clustering_config.get_config("quick")
  config.num_distributions_per_step = 4
  model = clustering.MetaClusterer(config.hidden, decoder_labels=labels)
  means = clustering.sample_mixture_means(jax.random.key(0), 4, config)
  params = {"inference": model.init(jax.random.key(1), jnp.zeros((10, 2)), jnp.zeros((1, 2))),
            "decoders": {"means": means, "log_variance": jnp.zeros((4,))}}
  swapped = {**params, "decoders": {**params["decoders"], "means": means[:, ::-1]}}

  def loss(p, decoder_labels):
    run = ml_collections.ConfigDict(dict(config, decoder_labels=decoder_labels))
    return float(clustering.meta_loss(p, {}, jax.random.key(2), means, model=model, config=run, set_size=10)[0])

  # With the labels matched or anchored the order of each decoder's means cannot matter; fixed, it does.
  assert loss(params, labels) == pytest.approx(loss(swapped, labels), rel=1e-6)
  assert loss(params, "fixed") != pytest.approx(loss(swapped, "fixed"), rel=1e-3)
  if labels == "matched":  # the better order of each: no worse than either fixed one
    assert loss(params, labels) <= min(loss(params, "fixed"), loss(swapped, "fixed")) + 1e-5


def test_an_anchor_point_is_the_sets_first_point_or_the_one_farthest_from_its_mean():
  sets = jax.random.normal(jax.random.key(0), (3, 7, 2))
  farthest = np.asarray(clustering.anchor_point(sets, "anchored_farthest"))
  for one, anchor in zip(np.asarray(sets), farthest):
    assert anchor.tolist() == one[np.argmax(np.sum((one - one.mean(0)) ** 2, -1))].tolist()
  assert np.asarray(clustering.anchor_point(sets[1], "anchored_farthest")).tolist() == farthest[1].tolist()
  assert np.asarray(clustering.anchor_point(sets, "anchored")).tolist() == np.asarray(sets[:, 0]).tolist()
  with pytest.raises(ValueError, match="'matched'"):
    clustering.anchor_point(sets, "matched")


def test_the_farthest_anchor_leaves_the_encoder_invariant_to_the_order_of_the_set():
  config = clustering_config.get_config("quick")
  sets = jax.random.normal(jax.random.key(0), (10, 2))
  queries = jax.random.normal(jax.random.key(1), (5, 2))
  shuffled = sets[jax.random.permutation(jax.random.key(2), 10)]
  assert sets[0].tolist() != shuffled[0].tolist()

  def change(decoder_labels):
    model = clustering.MetaClusterer(config.hidden, decoder_labels=decoder_labels)
    params = model.init(jax.random.key(3), sets, queries)
    return float(jnp.max(jnp.abs(model.apply(params, sets, queries).logits
                                 - model.apply(params, shuffled, queries).logits)))

  assert change("anchored_farthest") < 1e-5
  assert change("anchored") > 1e-3  # the first point is read, so the order matters


def test_decoders_of_known_variance_read_the_component_variance_and_leave_their_own_untrained():
  config = clustering_config.get_config("quick")
  config.num_distributions_per_step = 4
  model = clustering.MetaClusterer(config.hidden, decoder_labels="anchored")
  means = clustering.sample_mixture_means(jax.random.key(0), 4, config)
  params = {"inference": model.init(jax.random.key(1), jnp.zeros((10, 2)), jnp.zeros((1, 2))),
            "decoders": {"means": means, "log_variance": jnp.full((4,), 0.7)}}

  def loss(p, variance):
    run = ml_collections.ConfigDict(dict(config, decoder_variance=variance))
    return clustering.meta_loss(p, {}, jax.random.key(2), means, model=model, config=run, set_size=10)[0]

  at_truth = {**params, "decoders": {**params["decoders"], "log_variance": jnp.full((4,), jnp.log(0.1))}}
  assert float(loss(params, "known")) == pytest.approx(float(loss(at_truth, "learned")), rel=1e-6)
  assert float(loss(params, "known")) != pytest.approx(float(loss(params, "learned")), rel=1e-3)
  gradient = jax.grad(loss)(params, "known")["decoders"]
  assert float(jnp.max(jnp.abs(gradient["log_variance"]))) == 0.0 and float(jnp.max(jnp.abs(gradient["means"]))) > 0


def test_decoders_started_from_data_sit_on_points_of_their_mixture():
  config = clustering_config.get_config("quick")
  means = clustering.sample_mixture_means(jax.random.key(0), 50, config)
  config.decoder_init = "data"
  decoders = clustering.init_decoders(jax.random.key(1), means, config)
  # Each started mean is a point of its own mixture: within 5 standard deviations of one of its two means.
  distance = jnp.min(jnp.linalg.norm(decoders["means"][:, :, None] - means[:, None], axis=-1), -1)
  assert decoders["means"].shape == means.shape and float(jnp.max(distance)) < 5 * 0.1 ** 0.5
  config.decoder_init = "prior"
  drawn = clustering.init_decoders(jax.random.key(1), means, config)["means"]
  assert float(jnp.max(jnp.min(jnp.linalg.norm(drawn[:, :, None] - means[:, None], axis=-1), -1))) > 1.0


def test_clustering_error_ignores_label_swaps():
  labels = jnp.array([0, 0, 1, 1, 1])
  assert float(clustering.permutation_free_error(1 - labels, labels)) == 0.0
  assert float(clustering.permutation_free_error(jnp.array([0, 1, 1, 1, 1]), labels)) == pytest.approx(0.2)
  assert float(clustering.permutation_free_error(jnp.array([1, 0, 0, 0, 0]), labels)) == pytest.approx(0.2)
