"""Learning sufficient statistics of exponential families (Wu et al., demo 3, Figures 3 and 4).

Each distribution is a 20-D vector of i.i.d. components from one family with one
free parameter; the latent z is that parameter (unconstrained: the parameter is
softplus(z) for the positive ones) and the decoder is the family's likelihood.
The meta-inference network g(D, x) sees the query vector x and a set D of N
vectors of the same distribution and is trained with the MetaELBO. Its inferred
parameter (the posterior mean, mapped to the parameter's range) is scored by the
MSE against the true parameter of unseen distributions.

  single family: MetaVAE over 30 members vs a VAE (q(z | x)) trained on one member;
  many families: one MetaVAE over the 90 Gaussian, log-normal and exponential members
    vs the three single-family MetaVAEs, tested also on Laplace, Weibull and Beta,
    which no model was trained on (their "inferred parameter" is the model's latent
    mapped to a positive value: nothing ties it to those families, which is what the
    test probes).

    python -m experiments.expfam --config experiments/configs/expfam.py --workdir workdirs/expfam
"""

from __future__ import annotations

import functools
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import cli, rundir, trainer
from experiments.plotting import figure
from meta_amortized import objectives
from meta_amortized.distributions import DiagonalGaussian
from meta_amortized.networks import MLP, SummaryNetwork, gaussian_from_params

TRAIN_FAMILIES = ("gaussian", "lognormal", "exponential")
UNSEEN_FAMILIES = ("laplace", "weibull", "beta")
POSITIVE = {"exponential", "laplace", "weibull", "beta"}
EVALUATION_FIELDS = ("unseen_range", "wide_range", "num_test_params", "test_queries")  # see `trainer.fit`


def to_parameter(family: str, z: jax.Array) -> jax.Array:
  return jax.nn.softplus(z) if family in POSITIVE else z


def sample(family: str, key: jax.Array, theta: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Draws of one family at parameter theta (scalar)."""
  if family == "gaussian":
    return theta + jax.random.normal(key, shape)
  if family == "lognormal":
    return jnp.exp(theta + jax.random.normal(key, shape))
  if family == "exponential":
    return jax.random.exponential(key, shape) / theta
  if family == "laplace":
    return theta * jax.random.laplace(key, shape)
  if family == "weibull":
    return jax.random.weibull_min(key, 1.0, theta, shape)
  if family == "beta":
    return jax.random.beta(key, theta, theta, shape)
  raise ValueError(f"unknown family {family!r}")


def log_likelihood(family: str, x: jax.Array, z: jax.Array) -> jax.Array:
  """log p(x | parameter(z)) summed over the vector's components; x (B, dim), z (B, 1) -> (B,)."""
  theta = to_parameter(family, z)
  if family == "gaussian":
    return jnp.sum(-0.5 * (x - theta) ** 2 - 0.5 * jnp.log(2 * jnp.pi), -1)
  if family == "lognormal":
    log_x = jnp.log(x)
    return jnp.sum(-0.5 * (log_x - theta) ** 2 - 0.5 * jnp.log(2 * jnp.pi) - log_x, -1)
  if family == "exponential":
    return jnp.sum(jnp.log(theta) - theta * x, -1)
  raise ValueError(f"no training likelihood for family {family!r}")


def features(x: jax.Array) -> jax.Array:
  """Per-component inputs [x, log|x|] (the log lets one network read positive data on any scale)."""
  return jnp.concatenate([x, jnp.log(jnp.abs(x) + 1e-6)], -1)


class ParameterInference(nn.Module):
  """q(z | D, x); without a set, the VAE's q(z | x)."""

  hidden: int
  use_set: bool = True

  @nn.compact
  def __call__(self, sets: jax.Array, queries: jax.Array) -> DiagonalGaussian:
    inputs = features(queries)
    if self.use_set:
      summary = SummaryNetwork((self.hidden, self.hidden), activation=nn.relu)(features(sets))
      inputs = jnp.concatenate([inputs, jnp.broadcast_to(summary, inputs.shape[:-1] + summary.shape[-1:])], -1)
    return gaussian_from_params(MLP((self.hidden, self.hidden, 2))(inputs))


def draw_parameters(key, family, lo_hi, num):
  return jax.random.uniform(key, (num,), minval=lo_hi[0], maxval=lo_hi[1])


def meta_loss(params, state, key, thetas, *, families, model, config):
  """Negative MetaELBO over all training distributions; `families` names the family of each block of thetas."""
  keys = jax.random.split(key, len(families))
  losses = []
  for family, family_key, family_thetas in zip(families, keys, thetas):
    def one(dist_key, theta, family=family):
      set_key, query_key, elbo_key = jax.random.split(dist_key, 3)
      sets = sample(family, set_key, theta, (config.set_size, config.dim))
      queries = sample(family, query_key, theta, (config.batch_size, config.dim))
      prior = DiagonalGaussian(jnp.zeros((config.batch_size, 1)),
                               jnp.full((config.batch_size, 1), 2 * jnp.log(config.prior_std)))
      return objectives.elbo(elbo_key, model.apply(params, sets, queries),
                             functools.partial(log_likelihood, family, queries), prior=prior,
                             num_samples=config.num_samples)
    losses.append(jax.vmap(one)(jax.random.split(family_key, family_thetas.shape[0]), family_thetas))
  return -jnp.mean(jnp.concatenate(losses)), ({}, state)


def squared_errors(params, key, thetas, *, model, config):
  """For each family and each of its test parameters: the squared error of the inferred parameter,
  averaged over test_queries queries. `thetas` maps family -> (num,) parameters; one program for all."""
  def one(param_key, theta, family):
    set_key, query_key = jax.random.split(param_key)
    sets = sample(family, set_key, theta, (config.set_size, config.dim))
    queries = sample(family, query_key, theta, (config.test_queries, config.dim))
    inferred = to_parameter(family, model.apply(params, sets, queries).mean[:, 0])
    return jnp.mean((inferred - theta) ** 2)

  errors = {}
  for i, (name, ts) in enumerate(sorted(thetas.items())):
    keys = jax.random.split(jax.random.fold_in(key, i), ts.shape[0])
    errors[name] = jax.vmap(functools.partial(one, family=name.split("/")[0]))(keys, ts)
  return errors


@rundir.owns_workdir
def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict:
  trainer.check_training(config)
  trainer.check_positive(config, "dim", "num_per_family", "prior_std", "set_size", "batch_size", "hidden",
                         "num_samples", "num_test_params", "test_queries")
  workdir.mkdir(parents=True, exist_ok=True)
  key = jax.random.key(config.seed)
  train_thetas = {f: draw_parameters(jax.random.fold_in(key, i), f, config.train_range[f], config.num_per_family)
                  for i, f in enumerate(TRAIN_FAMILIES)}
  meta, plain = ParameterInference(config.hidden), ParameterInference(config.hidden, use_set=False)
  dummy = (jnp.ones((config.set_size, config.dim)), jnp.ones((1, config.dim)))

  def train(name, model, families, thetas):
    return trainer.fit(config, workdir, run=name, init=lambda k: (model.init(k, *dummy), {}),
                       loss_fn=functools.partial(meta_loss, families=families, model=model, config=config),
                       batch=(thetas,), evaluation_fields=EVALUATION_FIELDS).params

  metas = {f"meta_vae_{f}": train(f"meta_vae_{f}", meta, (f,), (train_thetas[f],)) for f in TRAIN_FAMILIES}
  metas["meta_vae_90"] = train("meta_vae_90", meta, TRAIN_FAMILIES, tuple(train_thetas[f] for f in TRAIN_FAMILIES))
  # A VAE on one member of each family: its first training distribution.
  vaes = {f"vae_{f}": train(f"vae_{f}", plain, (f,), (train_thetas[f][:1],)) for f in TRAIN_FAMILIES}

  # Unseen parameters: "family/in" from the training (or, for unseen families, the test) range,
  # "family/wide" evenly over the wider range of the curves.
  eval_key = jax.random.fold_in(key, 100)
  thetas = {}
  for i, family in enumerate(TRAIN_FAMILIES + UNSEEN_FAMILIES):
    in_range = config.train_range[family] if family in TRAIN_FAMILIES else config.unseen_range[family]
    thetas[f"{family}/in"] = draw_parameters(jax.random.fold_in(eval_key, i), family, in_range, config.num_test_params)
    if family in TRAIN_FAMILIES:
      thetas[f"{family}/wide"] = jnp.linspace(*config.wide_range[family], config.num_test_params)
  errors = {}
  for model, group in ((meta, metas), (plain, vaes)):  # models of one architecture: stacked, one program
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *group.values())
    evaluate = jax.vmap(functools.partial(squared_errors, model=model, config=config), in_axes=(0, None, None))
    group_errors = jax.jit(evaluate)(stacked, jax.random.fold_in(eval_key, 1000), thetas)
    errors.update({name: jax.tree.map(lambda e, i=i: e[i], group_errors) for i, name in enumerate(group)})

  many = {family: {name: float(jnp.mean(errors[name][f"{family}/in"]))
                   for name in ("meta_vae_90",) + tuple(f"meta_vae_{f}" for f in TRAIN_FAMILIES)}
          for family in TRAIN_FAMILIES + UNSEEN_FAMILIES}
  single = {family: {"meta_vae": many[family][f"meta_vae_{family}"],
                     "vae": float(jnp.mean(errors[f"vae_{family}"][f"{family}/in"]))} for family in TRAIN_FAMILIES}
  curves = {family: {"theta": thetas[f"{family}/wide"].tolist(),
                     **{name: errors[name][f"{family}/wide"].tolist()
                        for name in (f"meta_vae_{family}", f"vae_{family}", "meta_vae_90")}}
            for family in TRAIN_FAMILIES}
  results = {"single": single, "many": many, "curves": curves,
             "train_range": {f: list(config.train_range[f]) for f in TRAIN_FAMILIES}}
  trainer.write_results(workdir, results)
  plot(workdir, results)
  return results


def plot(workdir, results):
  with figure(workdir / "expfam_single.png", 1, 3, figsize=(13, 3.4)) as (fig, axes):
    for ax, family in zip(axes, TRAIN_FAMILIES):
      curve = results["curves"][family]
      for name, style in [(f"meta_vae_{family}", "-"), ("meta_vae_90", "--"), (f"vae_{family}", ":")]:
        ax.plot(curve["theta"], np.maximum(curve[name], 1e-6), style, label=name)
      ax.axvspan(*results["train_range"][family], color="gray", alpha=0.15, label="training range")
      ax.set_yscale("log")
      ax.set_xlabel(f"{family} parameter")
      ax.set_ylabel("MSE of inferred parameter")
      ax.legend(fontsize=7)

  families = list(results["many"])
  names = ["meta_vae_90", "meta_vae_gaussian", "meta_vae_lognormal", "meta_vae_exponential"]
  with figure(workdir / "expfam_many.png", figsize=(9, 3.4)) as (fig, ax):
    width = 0.2
    for j, name in enumerate(names):
      ax.bar(np.arange(len(families)) + (j - 1.5) * width, [results["many"][f][name] for f in families], width,
             label=name)
    ax.set_xticks(np.arange(len(families)), families)
    ax.set_yscale("log")
    ax.set_ylabel("MSE of inferred parameter")
    ax.legend(fontsize=7)


if __name__ == "__main__":
  cli.main("expfam", run)
