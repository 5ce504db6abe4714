"""Clustering mixtures of Gaussians with a MetaVAE (Wu et al., demo 1).

Each distribution is an even mixture of two isotropic Gaussians; the latent
z in {0, 1} is the component, summed over exactly. A MetaVAE is amortized over
many training mixtures (one decoder each: the two component means and a
variance) for each summary-set size N; a VAE is trained on one mixture. Both
cluster 1000 unseen mixtures; the error counts up to a swap of the labels.

    python -m experiments.clustering --config experiments/configs/clustering.py --workdir workdirs/clustering
"""

from __future__ import annotations

import functools
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments import cli, paper, rundir, trainer
from experiments.plotting import figure
from meta_amortized import objectives
from meta_amortized.distributions import Categorical, DiagonalGaussian
from meta_amortized.networks import MLP, SummaryNetwork
from meta_amortized.sampling import sample_without_replacement

# Read only by the evaluation (or, for vae_num_steps, as another run's num_steps): see `trainer.fit`.
EVALUATION_FIELDS = ("num_test_mixtures", "test_queries", "vae_num_steps", "bayes_chains", "bayes_steps",
                     "bayes_burn_in")
# The decoder_labels whose component 0 is the one nearer a point of the set (`anchor_point`).
ANCHORED = ("anchored", "anchored_farthest")


def validate(config: ml_collections.ConfigDict) -> None:
  trainer.check_training(config)
  trainer.check_positive(config, "data_dim", "component_variance", "mean_range", "num_train_mixtures", "set_sizes",
                         "num_distributions_per_step", "batch_size", "hidden", "vae_num_steps", "decoder_learning_rate",
                         "num_test_mixtures", "test_queries", "bayes_chains", "bayes_steps")
  if not isinstance(config.bayes_burn_in, int) or not 0 <= config.bayes_burn_in < config.bayes_steps:
    raise trainer.ConfigError(f"config.bayes_burn_in={config.bayes_burn_in!r} is not allowed; expected an integer in "
                              f"[0, config.bayes_steps={config.bayes_steps})")
  if any(not isinstance(m, int) or not 0 < m <= config.num_train_mixtures for m in config.train_mixture_counts):
    raise trainer.ConfigError(
        f"config.train_mixture_counts={config.train_mixture_counts!r} is not allowed; expected integers in "
        f"[1, config.num_train_mixtures={config.num_train_mixtures}]")
  trainer.check_choice(config, "decoder_labels", ("matched", *ANCHORED, "fixed"))
  trainer.check_choice(config, "decoder_variance", ("learned", "known"))
  trainer.check_choice(config, "decoder_init", ("prior", "data"))
  if config.num_distributions_per_step > config.num_train_mixtures:
    raise trainer.ConfigError(
        f"config.num_distributions_per_step={config.num_distributions_per_step} is not allowed; "
        f"expected at most config.num_train_mixtures={config.num_train_mixtures}")


def sample_mixture_means(key: jax.Array, num: int, config: ml_collections.ConfigDict) -> jax.Array:
  """(num, 2, data_dim) component means ~ U(-mean_range, mean_range)."""
  return jax.random.uniform(key, (num, 2, config.data_dim), minval=-config.mean_range, maxval=config.mean_range)


def sample_points(key: jax.Array, means: jax.Array, shape: tuple[int, ...], variance: float):
  """Points of one mixture (means (2, d)): returns x of shape shape + (d,) and labels of shape `shape`."""
  label_key, noise_key = jax.random.split(key)
  labels = jax.random.bernoulli(label_key, 0.5, shape).astype(jnp.int32)
  noise = jnp.sqrt(variance) * jax.random.normal(noise_key, shape + means.shape[-1:])
  return means[labels] + noise, labels


def anchor_point(sets: jax.Array, decoder_labels: str) -> jax.Array:
  """The point of each set (..., N, d) -> (..., d) whose nearer component is component 0: the set's first point
  (decoder_labels "anchored") or the one farthest from the set's mean ("anchored_farthest"), which lies clear of the
  boundary between two close components far more often than a point drawn at random."""
  if decoder_labels == "anchored_farthest":
    distance = jnp.sum((sets - jnp.mean(sets, -2, keepdims=True)) ** 2, -1)
    return jnp.take_along_axis(sets, jnp.argmax(distance, -1)[..., None, None], -2)[..., 0, :]
  if decoder_labels == "anchored":
    return sets[..., 0, :]
  raise ValueError(f"decoder_labels={decoder_labels!r} names no anchor point; expected one of {ANCHORED}")


class MetaClusterer(nn.Module):
  """g(D, x) = r(CONCAT(x, h(D))) with a categorical output over the two components."""

  hidden: int
  decoder_labels: str = "fixed"  # the config's; with an anchored one r also reads the set's anchor point

  @nn.compact
  def __call__(self, sets: jax.Array, queries: jax.Array) -> Categorical:
    summary = SummaryNetwork((self.hidden, self.hidden), activation=nn.relu)(sets)
    if self.decoder_labels in ANCHORED:
      summary = jnp.concatenate([summary, anchor_point(sets, self.decoder_labels)], -1)
    summary = jnp.broadcast_to(summary, queries.shape[:-1] + summary.shape[-1:])
    return Categorical(MLP((self.hidden, self.hidden, 2))(jnp.concatenate([queries, summary], -1)))


class Clusterer(nn.Module):
  """The VAE's q(z | x)."""

  hidden: int

  @nn.compact
  def __call__(self, queries: jax.Array) -> Categorical:
    return Categorical(MLP((self.hidden, self.hidden, 2))(queries))


def component_log_likelihoods(decoder: dict, x: jax.Array) -> jax.Array:
  """log p(x | z = c) for both c: (B, 2). The decoder is its two means and a log-variance."""
  log_variance = jnp.broadcast_to(decoder["log_variance"], x.shape[:-1] + (2,) + x.shape[-1:])
  means = jnp.broadcast_to(decoder["means"], log_variance.shape)
  return DiagonalGaussian(means, log_variance).log_prob(x[..., None, :])


def with_variance(decoder: dict, config: ml_collections.ConfigDict) -> dict:
  """The decoder as the likelihood reads it: its own log-variance, or the known component variance
  (`decoder_variance="known"`; the parameter then gets no gradient)."""
  if config.decoder_variance == "known":
    return dict(decoder, log_variance=jnp.full_like(decoder["log_variance"], jnp.log(config.component_variance)))
  return decoder


def init_decoders(key: jax.Array, means: jax.Array, config: ml_collections.ConfigDict) -> dict:
  """The decoders of the mixtures of `means` (num, 2, d) at step 0: their means drawn from the prior
  (`decoder_init="prior"`) or two points of each mixture (`"data"`), and a log-variance of 0."""
  num = means.shape[0]
  if config.decoder_init == "data":
    points, _ = jax.vmap(lambda k, m: sample_points(k, m, (2,), config.component_variance))(
        jax.random.split(key, num), means)
    return {"means": points, "log_variance": jnp.zeros((num,))}
  return {"means": sample_mixture_means(key, num, config), "log_variance": jnp.zeros((num,))}


def optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam, with its own learning rate for the decoders."""
  return optax.multi_transform(
      {"inference": optax.adam(config.learning_rate), "decoder": optax.adam(config.decoder_learning_rate)},
      lambda params: {k: jax.tree.map(lambda _: "inference" if k == "inference" else "decoder", v)
                      for k, v in params.items()})


def meta_loss(params, state, key, train_means, *, model, config, set_size):
  """Negative exact MetaELBO of K training mixtures, each with B queries sharing one set of N points."""
  pick_key, data_key = jax.random.split(key)
  num_distributions = min(config.num_distributions_per_step, train_means.shape[0])
  chosen = sample_without_replacement(pick_key, train_means.shape[0], num_distributions)

  def one(dist_key, means, decoder):
    points, _ = sample_points(dist_key, means, (config.batch_size + set_size,), config.component_variance)
    queries, sets = points[:config.batch_size], points[config.batch_size:]
    posterior = model.apply(params["inference"], sets, queries)
    log_likelihoods = component_log_likelihoods(with_variance(decoder, config), queries)
    elbo = objectives.enumerated_elbo(posterior, log_likelihoods)
    swapped = objectives.enumerated_elbo(posterior, log_likelihoods[:, ::-1])
    if config.decoder_labels == "matched":  # the order a decoder parameter, fitted exactly: the better of both
      return jnp.where(jnp.mean(elbo) >= jnp.mean(swapped), elbo, swapped)
    if config.decoder_labels in ANCHORED:  # component 0 the one nearer the set's anchor point
      distance = jnp.sum((decoder["means"] - anchor_point(sets, config.decoder_labels)) ** 2, -1)
      return jnp.where(distance[0] <= distance[1], elbo, swapped)
    return elbo

  decoders = jax.tree.map(lambda p: p[chosen], params["decoders"])
  keys = jax.random.split(data_key, chosen.shape[0])
  loss = -jnp.mean(jax.vmap(one)(keys, train_means[chosen], decoders))
  return loss, ({}, state)


def vae_loss(params, state, key, means, *, model, config):
  queries, _ = sample_points(key, means, (config.batch_size,), config.component_variance)
  posterior = model.apply(params["inference"], queries)
  log_likelihoods = component_log_likelihoods(with_variance(params["decoder"], config), queries)
  loss = -jnp.mean(objectives.enumerated_elbo(posterior, log_likelihoods))
  return loss, ({}, state)


def permutation_free_error(predictions: jax.Array, labels: jax.Array) -> jax.Array:
  """Clustering error of one mixture up to swapping the two labels."""
  wrong = jnp.mean(predictions != labels)
  return jnp.minimum(wrong, 1.0 - wrong)


# Edges of the bins of the distance between a mixture's two means that the diagnostics split by (the last bin is open).
SEPARATION_EDGES = (0.0, 1.0, 1.5, 2.5)


def separation(means: jax.Array) -> np.ndarray:
  """|m1 - m0| of each mixture of `means` (num, 2, d)."""
  return np.linalg.norm(np.asarray(means[:, 1] - means[:, 0]), axis=-1)


def by_separation(values, distances: np.ndarray) -> list[float | None]:
  """The mean of `values` (one per mixture) over the mixtures of each bin of SEPARATION_EDGES; None for an empty bin."""
  values, bins = np.asarray(values), np.digitize(distances, SEPARATION_EDGES[1:])
  return [float(np.mean(values[bins == b])) if np.any(bins == b) else None for b in range(len(SEPARATION_EDGES))]


def bin_counts(distances: np.ndarray) -> list[int]:
  """How many mixtures fall in each bin of SEPARATION_EDGES."""
  return np.bincount(np.digitize(distances, SEPARATION_EDGES[1:]), minlength=len(SEPARATION_EDGES)).tolist()


def evaluate(predict, test_means, key, config, set_size, batch_size=None):
  """Clustering error of each test mixture: its test queries clustered with one set D of N points of it.

  predict(set (N, d), queries (Q, d), key) -> labels (Q,); the key is the mixture's own, for a classifier that
  samples. All mixtures at once, or batch_size at a time.
  """
  def one(mixture_key, means):
    points, labels = sample_points(mixture_key, means, (config.test_queries + set_size,), config.component_variance)
    queries, sets = points[:config.test_queries], points[config.test_queries:]
    predictions = predict(sets, queries, jax.random.fold_in(mixture_key, 1))
    return permutation_free_error(predictions, labels[:config.test_queries])

  keys = jax.random.split(key, test_means.shape[0])
  if batch_size is None:
    return jax.jit(jax.vmap(one))(keys, test_means)
  return jax.jit(lambda k, m: jax.lax.map(lambda a: one(*a), (k, m), batch_size=batch_size))(keys, test_means)


def known_means_error(test_means: jax.Array, config: ml_collections.ConfigDict) -> float:
  """The error of the Bayes classifier that knows both means, Phi(-|m1 - m0| / (2 sigma)), averaged over the test
  mixtures: the floor of any clustering of them."""
  distance = jnp.linalg.norm(test_means[:, 1] - test_means[:, 0], axis=-1)
  return float(jnp.mean(jax.scipy.stats.norm.cdf(-distance / (2 * jnp.sqrt(config.component_variance)))))


def posterior_means(key: jax.Array, sets: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
  """Draws of the two means given the set D alone (N, d), under the known prior: (bayes_chains * (bayes_steps -
  bayes_burn_in), 2, d).

  Gibbs sampling, exact in each step: the components of D's points given the means, then each mean given its
  points, a Gaussian truncated to the prior's box (uniform on the box when no point is assigned to it). Each
  draw's components are ordered along the principal axis of D, so that label 0 means one side of D throughout.
  """
  variance, bound = config.component_variance, config.mean_range
  init_key, chain_key = jax.random.split(key)
  start = sets[jax.random.randint(init_key, (config.bayes_chains, 2), 0, sets.shape[0])]  # two points of D a chain

  def step(means, step_key):
    assign_key, normal_key, uniform_key = jax.random.split(step_key, 3)
    squared = jnp.sum((sets[None, :, None] - means[:, None]) ** 2, -1)  # (chains, N, 2)
    second = jax.random.bernoulli(assign_key, jax.nn.sigmoid((squared[..., 0] - squared[..., 1]) / (2 * variance)))
    weights = jnp.stack([1.0 - second, second], -1)  # (chains, N, 2)
    counts = jnp.sum(weights, 1)[..., None]  # (chains, 2, 1)
    centre = jnp.einsum("cnk,nd->ckd", weights, sets) / jnp.maximum(counts, 1.0)
    scale = jnp.sqrt(variance / jnp.maximum(counts, 1.0))
    standard = jax.random.truncated_normal(normal_key, (-bound - centre) / scale, (bound - centre) / scale)
    uniform = jax.random.uniform(uniform_key, centre.shape, minval=-bound, maxval=bound)
    means = jnp.where(counts > 0, centre + scale * standard, uniform)
    return means, means

  _, draws = jax.lax.scan(step, start, jax.random.split(chain_key, config.bayes_steps))
  draws = draws[config.bayes_burn_in:].reshape(-1, 2, sets.shape[-1])
  centred = sets - jnp.mean(sets, 0)
  axis = jnp.linalg.eigh(centred.T @ centred)[1][:, -1]
  flip = (draws[:, 1] - draws[:, 0]) @ axis < 0
  return jnp.where(flip[:, None, None], draws[:, ::-1], draws)


def bayes_predict(sets: jax.Array, queries: jax.Array, key: jax.Array, config: ml_collections.ConfigDict):
  """The Bayes classifier that sees D: each query to the component under which its predictive density given D,
  the mean over `posterior_means` of N(x; m_k, sigma^2 I), is larger."""
  draws = posterior_means(key, sets, config)  # (S, 2, d)
  squared = jnp.sum((queries[:, None, None] - draws[None]) ** 2, -1)  # (Q, S, 2)
  return jnp.argmax(jax.nn.logsumexp(-squared / (2 * config.component_variance), axis=1), -1)


@rundir.owns_workdir
def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict:
  validate(config)
  workdir.mkdir(parents=True, exist_ok=True)
  data_key, test_key, eval_key = jax.random.split(jax.random.key(config.seed), 3)
  train_means = sample_mixture_means(data_key, config.num_train_mixtures, config)
  test_means = sample_mixture_means(test_key, config.num_test_mixtures, config)
  errors = {}

  vae = Clusterer(config.hidden)
  vae_config = ml_collections.ConfigDict(dict(config, num_steps=config.vae_num_steps))
  state = trainer.fit(
      vae_config, workdir, run="vae",
      init=lambda key: ({"inference": vae.init(key, jnp.zeros((1, config.data_dim))),
                         "decoder": jax.tree.map(lambda p: p[0], init_decoders(key, train_means[:1], config))}, {}),
      loss_fn=functools.partial(vae_loss, model=vae, config=config), batch=(train_means[0],),
      optimizer=optimizer(config), evaluation_fields=EVALUATION_FIELDS, num_steps_field="vae_num_steps")
  vae_predict = lambda sets, queries, key: jnp.argmax(vae.apply(state.params["inference"], queries).logits, -1)
  # Beside each mean error, the share of test mixtures clustered at over 20 % error: where a model's error comes from
  # a few mixtures it fails on rather than from every mixture's boundary.
  failed = {}

  def summarize(name, per_mixture):
    errors[name], failed[name] = float(jnp.mean(per_mixture)), float(jnp.mean(per_mixture > 0.2))
    return errors[name]

  summarize("vae", evaluate(vae_predict, test_means, eval_key, config, 1))

  model = MetaClusterer(config.hidden, decoder_labels=config.decoder_labels)

  def meta_vae(name, set_size, num_mixtures):
    state = trainer.fit(
        config, workdir, run=name,
        init=lambda key: ({
            "inference": model.init(key, jnp.zeros((set_size, config.data_dim)), jnp.zeros((1, config.data_dim))),
            "decoders": init_decoders(jax.random.fold_in(key, 1), train_means[:num_mixtures], config)}, {}),
        loss_fn=functools.partial(meta_loss, model=model, config=config, set_size=set_size),
        batch=(train_means[:num_mixtures],), optimizer=optimizer(config), evaluation_fields=EVALUATION_FIELDS)
    predict = lambda sets, queries, key: jnp.argmax(model.apply(state.params["inference"], sets, queries).logits, -1)
    return state, evaluate(predict, test_means, eval_key, config, set_size)

  # Where the errors lie: each model's mean error over the test mixtures whose means are 0-1, 1-1.5, 1.5-2.5 and
  # over 2.5 apart; and how the decoders of the largest N fit their training mixtures in the same bins.
  test_separation = separation(test_means)
  split = {"edges": list(SEPARATION_EDGES), "test_mixtures": bin_counts(test_separation)}
  for set_size in config.set_sizes:
    state, per_mixture = meta_vae(f"meta_vae_N{set_size}", set_size, config.num_train_mixtures)
    summarize(f"meta_vae_N{set_size}", per_mixture)
    split[f"meta_vae_N{set_size}"] = by_separation(per_mixture, test_separation)
  decoders = with_variance(state.params["decoders"], config)
  train_separation = separation(train_means)
  fitted = {"edges": list(SEPARATION_EDGES),
            "mixtures": bin_counts(train_separation),
            "true_separation": by_separation(train_separation, train_separation),
            "learned_separation": by_separation(separation(decoders["means"]), train_separation),
            "learned_variance": by_separation(np.exp(np.asarray(decoders["log_variance"])), train_separation)}
  by_mixtures = {str(m): float(jnp.mean(meta_vae(f"meta_vae_M{m}", max(config.set_sizes), m)[1]))
                 for m in config.train_mixture_counts}

  bayes = functools.partial(bayes_predict, config=config)
  bayes_error = {"known_means": known_means_error(test_means, config), "set_conditional": {}}
  for n in config.set_sizes:
    per_mixture = evaluate(bayes, test_means, eval_key, config, n, batch_size=50)
    bayes_error["set_conditional"][f"N{n}"] = float(jnp.mean(per_mixture))
    split[f"bayes_N{n}"] = by_separation(per_mixture, test_separation)
  results = {"clustering_error": errors, "bayes_error": bayes_error, "mixtures_above_20pct_error": failed,
             "error_by_separation": split, "training_decoders_by_separation": fitted,
             "set_sizes": list(config.set_sizes),
             "clustering_error_by_num_train_mixtures": by_mixtures,
             "set_size_of_mixture_sweep": max(config.set_sizes), "num_train_mixtures": config.num_train_mixtures,
             "num_test_mixtures": config.num_test_mixtures,
             "paper": paper.CLUSTERING}
  trainer.write_results(workdir, results)
  plot(workdir, config, errors, bayes_error, by_mixtures, test_means, state.params, model, eval_key)
  return results


def plot(workdir, config, errors, bayes_error, by_mixtures, test_means, params, model, key):
  sizes = list(config.set_sizes)
  with figure(workdir / "clustering_error.png", figsize=(4.5, 3.2)) as (fig, ax):
    ax.plot(sizes, [100 * errors[f"meta_vae_N{n}"] for n in sizes], "o-", label="MetaVAE (ours)")
    ax.plot(sizes, [100 * bayes_error["set_conditional"][f"N{n}"] for n in sizes], "k--",
            label="Bayes classifier given the same D")
    ax.axhline(100 * bayes_error["known_means"], color="k", ls=":", label="Bayes classifier given the means")
    ax.axhline(100 * errors["vae"], color="gray", ls="--", label="VAE, one mixture (ours)")
    reported = [n for n in sizes if f"meta_vae_N{n}" in paper.CLUSTERING]
    ax.plot(reported, [100 * paper.CLUSTERING[f"meta_vae_N{n}"] for n in reported], "s:", color="C1",
            label="MetaVAE (paper)")
    if by_mixtures:
      counts = sorted(int(m) for m in by_mixtures)
      ax.plot(counts, [100 * by_mixtures[str(m)] for m in counts], "^-", color="C2",
              label=f"MetaVAE, N = number of training mixtures (set of {max(sizes)})")
    ax.set_xlabel("N: summary set size, or number of training mixtures")
    ax.set_ylabel("clustering error on unseen mixtures (%)")
    ax.set_ylim(0, 100 * max(errors.values()) * 1.6)
    ax.legend(fontsize=7, loc="upper right")

  n = sizes[-1]
  with figure(workdir / "clustering_examples.png", 1, 4, figsize=(12, 3)) as (fig, axes):
    for i, ax in enumerate(axes):
      points, _ = sample_points(jax.random.fold_in(key, i), test_means[i], (config.test_queries + n,),
                                config.component_variance)
      queries, sets = points[:config.test_queries], points[config.test_queries:]
      labels = jnp.argmax(model.apply(params["inference"], sets, queries).logits, -1)
      ax.scatter(*_plane(queries), c=np.asarray(labels), cmap="coolwarm", s=8)
      ax.scatter(*_plane(sets, offset=-0.5), marker="x", c="k", s=10)
      ax.set_title(f"unseen mixture {i}, N = {n}", fontsize=9)


def _plane(points: jax.Array, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
  """(x, y) to draw of points (M, data_dim): their first two coordinates; in 1-D the coordinate against a constant
  `offset` (the queries on one line, the set on another)."""
  points = np.asarray(points)
  if points.shape[-1] == 1:
    return points[:, 0], np.full(points.shape[0], offset)
  return points[:, 0], points[:, 1]


if __name__ == "__main__":
  cli.main("clustering", run)
