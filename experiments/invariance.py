"""Transformation invariance on MNIST: train one model on the training values of a meta-split, then
score its codes with a linear probe on every unseen value (Wu et al., Table 2 and Figure 7).

Each distribution is a split of MNIST under one transformation value, computed once on the device.
The model trains with the shared jitted step (query batch and sets drawn on the device, distributions
vmapped); the final checkpoint is evaluated (no checkpoint selection). For each unseen value, the codes
of its training images (each query with a set of `set_size` images of the same distribution's training
split) fit the probe, and the codes of its test images (sets from its test split) score it.
"""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import trainer
from experiments.data import mnist, splits, transforms
from experiments.plotting import figure
from meta_amortized import probe, statistician
from meta_amortized.metavae import MetaVAE
from meta_amortized.networks import (
  ContextPosterior,
  Decoder,
  LatentPosterior,
  LatentPrior,
  MetaInferenceNetwork,
  StatisticianDecoder,
)
from meta_amortized.sampling import sample_without_replacement

MODELS = ("meta_vae", "ns", "vhe", "vhe_vampprior")


def validate(config: ml_collections.ConfigDict) -> None:
  trainer.check_training(config)
  trainer.check_choice(config, "transform", sorted(splits.MNIST_GRIDS))
  trainer.check_choice(config, "split", splits.SPLIT_NAMES)
  trainer.check_choice(config, "model", MODELS)
  trainer.check_positive(config, "batch_size", "set_size", "latent_dim", "hidden", "summary_features",
                         "context_dim", "decoder_wide", "num_pseudo_sets", "pseudo_set_size", "probe_tolerance",
                         "probe_max_iterations", "eval_batch_size")
  for field, limit in (("num_train_examples", 60000), ("num_test_examples", 10000)):
    value = config.data[field]
    if not isinstance(value, int) or not 0 < value <= limit:
      raise trainer.ConfigError(f"config.data.{field}={value!r} is not allowed; expected an integer in [1, {limit}]")
  chunk_field = "batch_size" if config.model == "ns" else "eval_batch_size"
  for field in ("num_train_examples", "num_test_examples"):
    if config.data[field] % config[chunk_field]:
      raise trainer.ConfigError(f"config.data.{field}={config.data[field]} is not allowed; expected a multiple of "
                                f"config.{chunk_field}={config[chunk_field]}")


def build_model(config: ml_collections.ConfigDict):
  if config.model == "meta_vae":
    return MetaVAE(MetaInferenceNetwork(tuple(config.summary_features), (config.hidden, config.hidden),
                                        config.latent_dim),
                   Decoder((config.hidden, config.hidden), 784))
  weight = config.context_kl_weight
  if weight is None and config.model != "ns":
    weight = 1.0 / config.data.num_train_examples
  return statistician.ContextLatentModel(
      kind="ns" if config.model == "ns" else "vhe",
      context=ContextPosterior(config.hidden, config.context_dim, None if config.model != "ns" else jax.nn.elu),
      latent_posterior=LatentPosterior(config.hidden, config.latent_dim),
      latent_prior=LatentPrior((config.hidden, config.hidden), config.latent_dim),
      decoder=StatisticianDecoder(config.hidden, config.decoder_wide, 784),
      num_pseudo_sets=config.num_pseudo_sets if config.model == "vhe_vampprior" else 0,
      pseudo_set_size=config.pseudo_set_size, context_kl_weight=weight)


@functools.partial(jax.jit, static_argnums=1)
def _transform_flat(images: jax.Array, name: str, value: jax.Array) -> jax.Array:
  return transforms.TRANSFORMS[name](images, value).reshape(images.shape[0], -1)


def transformed(images: jax.Array, name: str, values) -> jax.Array:
  """(K, M, 784): the images under each value, computed on the device."""
  return jnp.stack([_transform_flat(images, name, jnp.float32(v)) for v in values])


@functools.partial(jax.jit, static_argnames=("model", "set_size", "own_batch_as_set"))
def _encode_chunk(params, key, images, queries, *, model, set_size, own_batch_as_set):
  set_key, code_key = jax.random.split(key)
  if own_batch_as_set:
    sets = queries
  else:
    sets = images[sample_without_replacement(set_key, images.shape[0], set_size, (queries.shape[0],))]
  return model.encode(params, code_key, sets, queries)


def embed(model, params, key, images: jax.Array, *, config) -> jax.Array:
  """Codes (M, Z) of flat images (M, 784), each query with a set from the same images (NS: its batch of
  batch_size images, the set size it trained with)."""
  size = config.batch_size if config.model == "ns" else config.eval_batch_size
  encode = functools.partial(_encode_chunk, model=model, set_size=config.set_size,
                             own_batch_as_set=config.model == "ns")
  keys = jax.random.split(key, images.shape[0] // size)
  return jnp.concatenate([encode(params, k, images, images[i * size:(i + 1) * size]) for i, k in enumerate(keys)])


BASE_VALUES = {"rotate": 0.0, "scale": 1.0, "shear": 0.0}


def code_distance(model, params, key, images: jax.Array, transform: str, values, *, config) -> float:
  """Table 1's measure: the mean over `values` and images of ||code(x) - code(T_v(x))||, x an untransformed image.

  Each code is taken with sets drawn from its own distribution (the base images, or the images under T_v).
  """
  base = embed(model, params, key, transformed(images, transform, (BASE_VALUES[transform],))[0], config=config)
  distances = [jnp.mean(jnp.linalg.norm(embed(model, params, jax.random.fold_in(key, i + 1), flat, config=config)
                                        - base, axis=-1))
               for i, flat in enumerate(transformed(images, transform, values))]
  return float(jnp.mean(jnp.stack(distances)))


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict:
  validate(config)
  workdir.mkdir(parents=True, exist_ok=True)
  arrays = mnist.load_mnist(pathlib.Path(config.data.data_dir).expanduser(), manual_dir=config.data.manual_dir)
  train_images, train_labels = (jnp.asarray(a[:config.data.num_train_examples]) for a in arrays["train"])
  test_images, test_labels = (jnp.asarray(a[:config.data.num_test_examples]) for a in arrays["test"])
  train_values, unseen_values = splits.mnist_split(config.transform, config.split)
  distributions = transformed(train_images, config.transform, train_values)

  model = build_model(config)
  init = (lambda key: model.init(key, len(train_values))) if config.model == "meta_vae" else model.init
  state = trainer.fit(config, workdir, run=config.model, init_params=init,
                      loss_fn=functools.partial(model.loss, batch_size=config.batch_size, set_size=config.set_size),
                      batch=(distributions,))
  del distributions

  eval_key = jax.random.fold_in(jax.random.key(config.seed), 1)
  fit_probe = jax.jit(functools.partial(probe.fit_linear_probe, num_classes=10, tolerance=config.probe_tolerance,
                                        max_iterations=config.probe_max_iterations))
  accuracies, iterations, gradient_norms = [], [], []
  for i, value in enumerate(unseen_values):
    value_key = jax.random.fold_in(eval_key, i)
    codes = [embed(model, state.params, jax.random.fold_in(value_key, j),
                   transformed(images, config.transform, (value,))[0], config=config)
             for j, images in enumerate((train_images, test_images))]
    fit = fit_probe(codes[0], train_labels)
    accuracies.append(float(probe.probe_accuracy(fit, codes[1], test_labels)))
    iterations.append(int(fit.iterations))
    gradient_norms.append(float(fit.gradient_norm))

  results = {"model": config.model, "split": config.split, "transform": config.transform,
             "unseen_values": list(unseen_values), "test_accuracy": accuracies,
             "mean_test_accuracy": float(np.mean(accuracies)), "training_values": list(train_values),
             "train_steps": int(state.step), "probe_iterations": iterations,
             "probe_gradient_norms": gradient_norms}
  trainer.write_results(workdir, results)
  # Runs resume: rerunning a workdir with a larger num_steps extends it, and these files keep the curve.
  trainer.write_results(workdir, results, f"results_at_step_{results['train_steps']}.json")
  with figure(workdir / "accuracy.png", figsize=(6, 3.2)) as (_, ax):
    ax.plot(unseen_values, accuracies, "o-", label=config.model)
    for value in train_values:
      ax.axvline(value, color="gray", alpha=0.3)
    ax.set_xlabel(f"{config.transform} value (grey: training values)")
    ax.set_ylabel("linear-probe test accuracy")
    ax.set_title(f"{config.transform}, {config.split} split: mean {np.mean(accuracies):.3f}", fontsize=9)
  return results
