"""Transformation invariance on MNIST and Small NORB: train one model on the training values of a meta-split,
then score its codes with a linear probe on every unseen value (Wu et al., Table 2 and Figure 7).

On MNIST each distribution is a split of MNIST under one transformation value, computed once on the
device; on Small NORB it is the images with one value along one axis (elevation, azimuth, lighting), the
other axes free, and the models are the conv ones (`meta_amortized.conv`, batch norm in the trunk).
The model trains with the shared jitted step (query batch and sets drawn on the device, distributions
vmapped); the final checkpoint is evaluated (no checkpoint selection). For each unseen value, the codes
of its training images (each query with a set of `set_size` images of the same distribution's training
split) fit the probe, and the codes of its test images (sets from its test split) score it. The test codes'
`probe.code_geometry` (class separation, participation ratio) is reported beside the accuracy.

The models, the paper's four and the variants beside them (`meta_vae_iterative`, `vae`), and the ablation switches
(`--config.latent_prior`, `decoder_input`, `encoder_input`, `context_merge` of the NS and the VHEs; `decoders`,
`activation` of the MetaVAE) are registered in `experiments.variants`. The MLP MetaVAEs borrow a training decoder
for each unseen distribution: that of the training distribution whose mean summary h(D) (over `summary_sets` sets
of its training images) is nearest, or with `--config.unseen_decoder=best_bound` the one under which the MetaELBO
of its first `unseen_elbo_examples` training images is highest; the MetaELBO of its first `unseen_elbo_examples`
test images is reported under it (for the iterative one also after each of `eval_refinements` refinement steps:
`unseen_elbo_by_step`), and the iterative MetaVAE refines its codes with it.
"""

from __future__ import annotations

import collections
import functools
import pathlib
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import rundir, trainer, variants
from experiments.data import mnist, smallnorb, splits, transforms
from experiments.plotting import figure
from meta_amortized import probe
from meta_amortized.metavae import IterativeMetaVAE
from meta_amortized.sampling import as_float, sample_without_replacement
from meta_amortized.training import TrainState, mixed_precision

MODELS = tuple(variants.MODELS)  # the paper's four, and the variants registered beside them (`variants`)
META_VAES = ("meta_vae", "meta_vae_iterative", "vae")  # the MetaVAE's code (`metavae`), the VAE as a special case
DATASETS = ("mnist", "smallnorb")
FIXED_SET_PROBES = ("per_split", "shared")  # the probe beside test_accuracy's on codes that share one set
UNSEEN_DECODERS = ("nearest_summary", "best_bound")  # how an unseen value picks the training decoder it borrows
# Read only by the evaluation: a trained cell may be evaluated again with others (`trainer.fit`).
EVALUATION_FIELDS = ("eval_batch_size", "eval_refinements", "summary_sets", "unseen_elbo_examples", "probe_tolerance",
                     "probe_max_iterations", "fixed_set_probe", "unseen_decoder", "data.num_test_examples")


def validate(config: ml_collections.ConfigDict) -> None:
  trainer.check_training(config)
  trainer.check_choice(config, "dataset", DATASETS)
  grids = splits.MNIST_GRIDS if config.dataset == "mnist" else splits.NORB_AXES
  trainer.check_choice(config, "transform", sorted(grids))
  trainer.check_choice(config, "split", splits.SPLIT_NAMES)
  trainer.check_choice(config, "compute_dtype", ("float32", "bfloat16"))
  variants.check(config)  # the model and the ablation switches
  for diagnostic in DIAGNOSTICS:
    diagnostic.check(config)
  trainer.check_choice(config, "unseen_decoder", UNSEEN_DECODERS)
  if config.unseen_decoder != "nearest_summary" and not borrows_decoders(config):
    raise trainer.ConfigError(f"config.unseen_decoder={config.unseen_decoder!r} is not allowed with config.model="
                              f"{config.model!r}, config.decoders={config.decoders!r} on {config.dataset!r}; only "
                              "the MLP MetaVAEs with a decoder per distribution borrow one")
  trainer.check_positive(config, "batch_size", "set_size", "latent_dim", "hidden", "summary_features",
                         "context_dim", "num_pseudo_sets", "pseudo_set_size", "probe_tolerance",
                         "probe_max_iterations", "eval_batch_size", "num_refinements", "refinement_samples",
                         "summary_sets", "unseen_elbo_examples", "eval_refinements")
  if config.dataset == "mnist":
    trainer.check_positive(config, "decoder_wide")
    trainer.check_count(config, "data.num_train_examples", mnist.SIZES["train"])
    trainer.check_count(config, "data.num_test_examples", mnist.SIZES["test"])
    for field in ("num_train_examples", "num_test_examples"):  # every set is drawn from one split's images
      if config.set_size > config.data[field]:
        raise trainer.ConfigError(f"config.set_size={config.set_size} is not allowed with config.data.{field}="
                                  f"{config.data[field]}: a set of distinct images cannot be larger than the split")
  else:
    trainer.check_positive(config, "conv_features")
    if len(config.conv_features) != 9:
      raise trainer.ConfigError(f"config.conv_features={config.conv_features!r} is not allowed; expected the "
                                "widths of the 9 conv layers")


def check_set_size(config: ml_collections.ConfigDict, meta: MetaSplit) -> None:
  """A set of config.set_size distinct images must fit in every distribution it is drawn from: the training
  distributions and, for Small NORB (whose sizes are known only once it is loaded), each unseen one's splits.
  Checked before training."""
  sizes = {"training": meta.train.shape[1]}
  if config.dataset != "mnist":  # MNIST's are the configured split sizes, checked by `validate`
    for i, value in enumerate(meta.unseen_values):
      (train, _), (test, _) = meta.unseen(i)
      sizes[f"unseen {value} train"], sizes[f"unseen {value} test"] = train.shape[0], test.shape[0]
  small = {name: size for name, size in sizes.items() if size < config.set_size}
  if small:
    raise trainer.ConfigError(f"config.set_size={config.set_size} is not allowed: these distributions have fewer "
                              f"images {small}")


@functools.partial(jax.jit, static_argnums=1)
def _transform_flat(images: jax.Array, name: str, value: jax.Array) -> jax.Array:
  return transforms.TRANSFORMS[name](images, value).reshape(images.shape[0], -1)


def transformed(images: jax.Array, name: str, values) -> jax.Array:
  """(K, M, 784): the images under each value, computed on the device."""
  return jnp.stack([_transform_flat(images, name, jnp.float32(v)) for v in values])


class MetaSplit(NamedTuple):
  """The distributions of one experiment: the training ones stacked, the unseen ones made on demand."""

  train: jax.Array  # (K, M, *event)
  train_values: tuple
  unseen_values: tuple
  unseen: Callable[[int], tuple[tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]]  # i -> train, test
  num_classes: int


def mnist_meta_split(config: ml_collections.ConfigDict) -> MetaSplit:
  arrays = mnist.load_mnist(pathlib.Path(config.data.data_dir).expanduser(), manual_dir=config.data.manual_dir,
                            num_examples={"train": config.data.num_train_examples,
                                          "test": config.data.num_test_examples})
  train_images, train_labels = (jnp.asarray(a) for a in arrays["train"])
  test_images, test_labels = (jnp.asarray(a) for a in arrays["test"])
  train_values, unseen_values = splits.mnist_split(config.transform, config.split)

  def unseen(i):
    one = lambda images: transformed(images, config.transform, (unseen_values[i],))[0]
    return (one(train_images), train_labels), (one(test_images), test_labels)

  return MetaSplit(transformed(train_images, config.transform, train_values), train_values, unseen_values, unseen, 10)


def norb_meta_split(config: ml_collections.ConfigDict) -> MetaSplit:
  """Small NORB along one axis: a distribution is every image (both cameras) with one value of it; its
  training images come from the training split, its test images from the test split. The probe's label is
  the object category (5 classes)."""
  arrays = smallnorb.load_smallnorb(pathlib.Path(config.data.data_dir).expanduser(),
                                    manual_dir=config.data.manual_dir)
  axis = config.transform
  train_indices, unseen_indices = splits.norb_split(axis, config.split)

  def distribution(split, index):
    chosen = smallnorb.select(arrays[split], axis, index)
    return jnp.asarray(chosen["images"][..., None]), jnp.asarray(chosen["category"])

  train = [distribution("train", i)[0] for i in train_indices]
  sizes = {v: len(images) for v, images in zip(train_indices, train, strict=True)}
  if len(set(sizes.values())) > 1:
    raise ValueError(f"the training distributions along Small NORB's {axis} axis differ in size (value index: "
                     f"images) {sizes}; the stacked training step needs equal sizes")
  values = splits.NORB_VALUES[axis]
  return MetaSplit(jnp.stack(train), tuple(values[i] for i in train_indices), tuple(values[i] for i in unseen_indices),
                   lambda i: (distribution("train", unseen_indices[i]), distribution("test", unseen_indices[i])),
                   smallnorb.NUM_CATEGORIES)


def _sets_for(key, images, num_queries: int, set_size: int) -> jax.Array:
  """(num_queries, set_size, *event): a set of distinct images drawn from `images` for each query."""
  return images[sample_without_replacement(key, images.shape[0], set_size, (num_queries,))]


@functools.partial(jax.jit, static_argnames=("model", "set_size", "own_batch_as_set"))
def _encode_chunk(params, model_state, key, images, queries, decoder_index, one_set, *, model, set_size,
                  own_batch_as_set):
  set_key, code_key = jax.random.split(key)
  if own_batch_as_set:
    sets = queries
  elif one_set is not None:
    sets = jnp.broadcast_to(one_set, (queries.shape[0], *one_set.shape))
  else:
    sets = _sets_for(set_key, images, queries.shape[0], set_size)
  if isinstance(model, IterativeMetaVAE):
    return model.encode(params, model_state, code_key, sets, queries, decoder_index=decoder_index)
  return model.encode(params, model_state, code_key, sets, queries)


def embed(model, params, key, images: jax.Array, *, config, model_state=None, decoder_index=None,
          set_images: jax.Array | None = None, one_set: jax.Array | None = None) -> jax.Array:
  """Codes (M, Z) of images (M, *event) in chunks of eval_batch_size (the last may be smaller), each query
  with a set of set_size images drawn from `set_images`, by default `images` themselves (NS: its own chunk of
  batch_size images, the sets it trained on), or with `one_set` (set_size, *event), the one set every query shares.
  `model_state`: the batch statistics of a conv model; `decoder_index`: the decoder whose gradients the iterative
  MetaVAE refines with."""
  own_batch_as_set = config.model == "ns"
  if own_batch_as_set and (set_images is not None or one_set is not None):
    raise ValueError("config.model='ns' encodes each chunk with itself as the set; set_images and one_set cannot "
                     "be given")
  if one_set is not None and one_set.shape != (config.set_size, *images.shape[1:]):
    raise ValueError(f"one_set of shape {one_set.shape} is not a set of config.set_size={config.set_size} images of "
                     f"shape {images.shape[1:]}")
  size = config.batch_size if own_batch_as_set else config.eval_batch_size
  encode = functools.partial(_encode_chunk, model=model, set_size=config.set_size, own_batch_as_set=own_batch_as_set)
  pool = images if set_images is None else set_images
  starts = range(0, images.shape[0], size)
  keys = jax.random.split(key, len(starts))
  return jnp.concatenate([encode(params, model_state, k, pool, images[i:i + size], decoder_index, one_set)
                          for i, k in zip(starts, keys, strict=True)])


@functools.partial(jax.jit, static_argnames=("model", "set_size", "num_sets"))
def mean_summary(params, key, images: jax.Array, *, model, set_size: int, num_sets: int) -> jax.Array:
  """A MetaVAE's h(D) (S,) of one distribution, averaged over `num_sets` sets drawn from its images (M, D)."""
  return jnp.mean(model.summarize(params, _sets_for(key, as_float(images), num_sets, set_size)), axis=0)


@functools.partial(jax.jit, static_argnames=("model", "set_size", "num_queries", "num_steps"))
def unseen_meta_elbo(params, key, images: jax.Array, decoder_index, *, model, set_size: int, num_queries: int,
                     num_steps: int | None = None) -> jax.Array:
  """The MetaELBO (num_queries,) of the first `num_queries` of images (M, D) under decoder `decoder_index`,
  each with a set drawn from all of `images`; with `num_steps` (the iterative MetaVAE), the MetaELBOs
  (num_steps + 1, num_queries) after each of that many refinements."""
  set_key, elbo_key = jax.random.split(key)
  images = as_float(images)
  queries, sets = images[None, :num_queries], _sets_for(set_key, images, num_queries, set_size)[None]
  index = jnp.reshape(decoder_index, (1,))
  if num_steps is None:
    return model.bound(params, elbo_key, queries, sets, index)[0]
  return model.refine(params["meta_inference"], params["decoders"], elbo_key, queries, sets, index,
                      num_steps).elbos[:, 0]


BASE_VALUES = {"rotate": 0.0, "scale": 1.0, "shear": 0.0}
SET_SOURCES = ("own", "base")  # where code_distance draws the sets of the transformed images from


def code_distance(model, params, key, images: jax.Array, transform: str, values, *, config,
                  model_state=None, sets: str = "own") -> float:
  """Table 1's measure: the mean over `values` and images of ||code(x) - code(T_v(x))||, x an untransformed image.

  The code of x is taken with sets of the base images; that of T_v(x) with sets of the images under T_v
  (sets="own", Table 1's measure) or of the base images too (sets="base": only the query shows the
  transformation, so the difference between the two says how far the set undoes it). Every code gets fresh sets.
  """
  if sets not in SET_SOURCES:
    raise ValueError(f"sets={sets!r}: expected one of {SET_SOURCES}")
  embed_ = functools.partial(embed, model, params, config=config, model_state=model_state)
  base_images = transformed(images, transform, (BASE_VALUES[transform],))[0]
  base = embed_(key, base_images)
  set_images = base_images if sets == "base" else None
  distances = [jnp.mean(jnp.linalg.norm(embed_(jax.random.fold_in(key, i + 1), flat, set_images=set_images)
                                        - base, axis=-1))
               for i, flat in enumerate(transformed(images, transform, values))]
  return float(jnp.mean(jnp.stack(distances)))


def code_spread(model, params, key, images: jax.Array, *, config, model_state=None) -> float:
  """The mean ||code(x) - code(x')|| between each untransformed image and the one before it (sets of the
  images themselves): the scale against which Table 1's distances read."""
  codes = embed(model, params, key, images.reshape(images.shape[0], -1), config=config, model_state=model_state)
  return float(jnp.mean(jnp.linalg.norm(codes - jnp.roll(codes, 1, axis=0), axis=-1)))


def scores_unseen_elbo(config: ml_collections.ConfigDict) -> bool:
  """Whether the unseen distributions' MetaELBO is reported: for the MLP MetaVAEs (the conv MetaVAE's codes need
  no decoder)."""
  return config.model in META_VAES and config.dataset == "mnist"


def shares_decoder(config: ml_collections.ConfigDict) -> bool:
  """Whether every distribution has the same decoder: the VAE, or the MetaVAE with `decoders='shared'`."""
  return config.model == "vae" or config.decoders == "shared"


def borrows_decoders(config: ml_collections.ConfigDict) -> bool:
  """Whether the model is an MLP MetaVAE whose decoders belong to the training values: each unseen value borrows
  one of them, chosen by `config.unseen_decoder` (one shared decoder serves them all)."""
  return scores_unseen_elbo(config) and not shares_decoder(config)


def needs_training_summaries(config: ml_collections.ConfigDict) -> bool:
  """Whether `evaluate` picks the borrowed decoders by the training distributions' mean summaries."""
  return borrows_decoders(config) and config.unseen_decoder == "nearest_summary"


def _distribution_summary(model, params, images: jax.Array, index: int, config: ml_collections.ConfigDict):
  """`mean_summary` of distribution `index` (training ones first, then the unseen ones), each with its own sets."""
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), 2), index)
  return mean_summary(params, key, images, model=model, set_size=config.set_size, num_sets=config.summary_sets)


def training_summaries(model, params, train: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
  """(K, S): the mean summary h(D) of each training distribution (`train`: (K, M, D)), for `evaluate`."""
  return jnp.stack([_distribution_summary(model, params, images, k, config) for k, images in enumerate(train)])


@functools.partial(jax.jit, static_argnames=("model", "num_decoders", "set_size", "num_queries", "num_steps"))
def decoder_bounds(params, key, images: jax.Array, *, model, num_decoders: int, set_size: int, num_queries: int,
                   num_steps: int | None = None) -> jax.Array:
  """(num_decoders,): the mean `unseen_meta_elbo` of the first `num_queries` of images (M, D) under each decoder,
  all with the same sets and noise; with `num_steps` (the iterative MetaVAE), after that many refinements."""
  def bound(decoder_index):
    elbos = unseen_meta_elbo(params, key, images, decoder_index, model=model, set_size=set_size,
                             num_queries=num_queries, num_steps=num_steps)
    return jnp.mean(elbos if num_steps is None else elbos[-1])
  return jax.lax.map(bound, jnp.arange(num_decoders))


def borrowed_decoder(model, params, images: jax.Array, index: int, num_decoders: int,
                     config: ml_collections.ConfigDict, train_summaries: jax.Array | None) -> int:
  """The training decoder that unseen distribution `index` (`images`: its training split) borrows: that of the
  training distribution whose mean summary (`train_summaries`, from `training_summaries`) is nearest to its own
  ("nearest_summary"), or the one under which the MetaELBO of its first `unseen_elbo_examples` training images is
  highest ("best_bound", at the training's `num_refinements` for the iterative MetaVAE)."""
  if config.unseen_decoder == "nearest_summary":
    summary = _distribution_summary(model, params, images, num_decoders + index, config)
    return int(jnp.argmin(jnp.linalg.norm(train_summaries - summary, axis=-1)))
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), 3), index)
  num_steps = config.num_refinements if config.model == "meta_vae_iterative" else None
  bounds = decoder_bounds(params, key, images, model=model, num_decoders=num_decoders, set_size=config.set_size,
                          num_queries=min(config.unseen_elbo_examples, images.shape[0]), num_steps=num_steps)
  return int(jnp.argmax(bounds))


class UnseenValue(NamedTuple):
  """One unseen distribution as the evaluation holds it: its index and key, its splits' (images, labels), the
  decoder it borrows (None for models whose codes need none and that report no MetaELBO), its test codes."""

  index: int
  key: jax.Array
  train: tuple[jax.Array, jax.Array]
  test: tuple[jax.Array, jax.Array]
  decoder_index: int | None
  test_codes: jax.Array
  num_classes: int


class Diagnostic(NamedTuple):
  """An optional evaluation beside the paper's probe: whether a config asks for it, what it measures on each
  unseen value ({field: value}, appended to results.json's lists), and what it adds once over all values."""

  applies: Callable[[ml_collections.ConfigDict], bool]
  measure: Callable[..., dict]  # (model, state, value: UnseenValue, config, fit_probe) -> {field: value}
  summarize: Callable[[dict, ml_collections.ConfigDict], dict]  # (the fields' lists, config) -> fields
  check: Callable[[ml_collections.ConfigDict], None] = lambda config: None  # its own fields, by `validate`


def _unseen_elbo(model, state, value: UnseenValue, config, fit_probe) -> dict:
  """The MetaELBO of the first `unseen_elbo_examples` test images under the borrowed (or shared) decoder; for the
  iterative MetaVAE also after each of `eval_refinements` refinements, past the T of training."""
  del fit_probe
  images = value.test[0]
  score = functools.partial(unseen_meta_elbo, state.params, jax.random.fold_in(value.key, 2), images,
                            value.decoder_index, model=model, set_size=config.set_size,
                            num_queries=min(config.unseen_elbo_examples, images.shape[0]))
  if config.model != "meta_vae_iterative":
    return {"unseen_elbo": float(jnp.mean(score()))}
  curve = jnp.mean(score(num_steps=config.eval_refinements), axis=-1)
  return {"unseen_elbo": float(curve[config.num_refinements]), "unseen_elbo_curve": curve}


def _summarize_unseen_elbo(fields: dict, config) -> dict:
  summary = {"mean_unseen_elbo": float(np.mean(fields["unseen_elbo"])),
             "unseen_elbo_examples": min(config.unseen_elbo_examples, config.data.num_test_examples)}
  if borrows_decoders(config):
    summary["unseen_decoder"] = config.unseen_decoder
  curves = fields.pop("unseen_elbo_curve", None)
  if curves:
    summary["unseen_elbo_by_step"] = [float(v) for v in jnp.mean(jnp.stack(curves), axis=0)]
  return summary


def _code_geometry(model, state, value: UnseenValue, config, fit_probe) -> dict:
  """The test codes' class separation and participation ratio (`probe.code_geometry`)."""
  del model, state, fit_probe
  geometry = probe.code_geometry(value.test_codes, value.test[1], num_classes=value.num_classes)
  return {"code_class_separation": float(geometry.class_separation),
          "code_participation_ratio": float(geometry.participation_ratio)}


def _fixed_set_probe(model, state, value: UnseenValue, config, fit_probe) -> dict:
  """The probe again on codes whose queries all share one set, drawn once: no set noise."""
  keys = [jax.random.split(jax.random.fold_in(value.key, 3 + j)) for j in range(2)]  # (set, code) per split
  splits_ = (value.train, value.test)
  sets = [_sets_for(set_key, images, 1, config.set_size)[0]
          for (set_key, _), (images, _) in zip(keys, splits_, strict=True)]
  if config.fixed_set_probe == "shared":
    sets[1] = sets[0]
  train_codes, test_codes = (embed(model, state.params, code_key, images, config=config, model_state=state.model_state,
                                   decoder_index=value.decoder_index, one_set=one_set)
                             for (_, code_key), (images, _), one_set in zip(keys, splits_, sets, strict=True))
  fit = fit_probe(train_codes, value.train[1])
  return {"fixed_set_test_accuracy": float(probe.probe_accuracy(fit, test_codes, value.test[1]))}


def _check_fixed_set_probe(config) -> None:
  if config.fixed_set_probe is None:
    return
  trainer.check_choice(config, "fixed_set_probe", FIXED_SET_PROBES)
  if config.model == "ns":
    raise trainer.ConfigError(f"config.fixed_set_probe={config.fixed_set_probe!r} is not allowed with config.model="
                              "'ns'; the NS encodes each chunk of queries with that chunk as its set")


def _summarize_fixed_set_probe(fields: dict, config) -> dict:
  return {"fixed_set_probe": config.fixed_set_probe,
          "mean_fixed_set_test_accuracy": float(np.mean(fields["fixed_set_test_accuracy"]))}


# The optional evaluations, in the order their fields are written. Adding one touches neither `validate`'s main
# part nor `evaluate`.
DIAGNOSTICS = (
    Diagnostic(scores_unseen_elbo, _unseen_elbo, _summarize_unseen_elbo),
    Diagnostic(lambda config: True, _code_geometry, lambda fields, config: {}),
    Diagnostic(lambda config: config.fixed_set_probe is not None, _fixed_set_probe, _summarize_fixed_set_probe,
               _check_fixed_set_probe),
)


def evaluate(model, state: TrainState, meta: MetaSplit, config: ml_collections.ConfigDict,
             train_summaries: jax.Array | None = None) -> dict:
  """The evaluation fields of results.json: for every unseen value the probe's test accuracy and convergence (the
  paper's measure), and the fields of every `DIAGNOSTICS` entry that the config asks for. The MLP MetaVAEs with a
  decoder per training distribution borrow one for each unseen value (`borrowed_decoder`; `train_summaries`, from
  `training_summaries`, with config.unseen_decoder='nearest_summary'). `meta.train` is not used (and may be None,
  to free it)."""
  if needs_training_summaries(config) != (train_summaries is not None):
    raise ValueError(f"config.model={config.model!r} on {config.dataset!r} with config.unseen_decoder="
                     f"{config.unseen_decoder!r} {'needs' if needs_training_summaries(config) else 'takes no'} "
                     "train_summaries")
  eval_key = jax.random.fold_in(jax.random.key(config.seed), 1)
  fit_probe = functools.partial(probe.fit_linear_probe, num_classes=meta.num_classes,
                                tolerance=config.probe_tolerance, max_iterations=config.probe_max_iterations)
  diagnostics = [d for d in DIAGNOSTICS if d.applies(config)]
  fields = collections.defaultdict(list)
  for i in range(len(meta.unseen_values)):
    value_key = jax.random.fold_in(eval_key, i)
    (train_images, train_labels), (test_images, test_labels) = meta.unseen(i)
    decoder_index = 0 if scores_unseen_elbo(config) else None  # the shared decoder, or the borrowed one below
    if borrows_decoders(config):
      decoder_index = borrowed_decoder(model, state.params, train_images, i, len(meta.train_values), config,
                                       train_summaries)
      fields["unseen_decoder_values"].append(meta.train_values[decoder_index])
    train_codes, test_codes = (embed(model, state.params, jax.random.fold_in(value_key, j), images, config=config,
                                     model_state=state.model_state, decoder_index=decoder_index)
                               for j, images in enumerate((train_images, test_images)))
    fit = fit_probe(train_codes, train_labels)
    fields["test_accuracy"].append(float(probe.probe_accuracy(fit, test_codes, test_labels)))
    fields["probe_iterations"].append(int(fit.iterations))
    fields["probe_gradient_norms"].append(float(fit.gradient_norm))
    value = UnseenValue(i, value_key, (train_images, train_labels), (test_images, test_labels), decoder_index,
                        test_codes, meta.num_classes)
    for diagnostic in diagnostics:
      for field, measured in diagnostic.measure(model, state, value, config, fit_probe).items():
        fields[field].append(measured)

  accuracies = fields.pop("test_accuracy")
  results = {"test_accuracy": accuracies, "mean_test_accuracy": float(np.mean(accuracies))}
  summaries = {}
  for diagnostic in diagnostics:
    summaries.update(diagnostic.summarize(fields, config))
  return {**results, **fields, **summaries}


@rundir.owns_workdir
def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict:
  """Trains (or resumes) the model of `config` in `workdir`, evaluates it on the unseen values and writes
  results.json (also as results_at_step_<step>.json), wall_times.jsonl and accuracy.png; returns the results."""
  validate(config)
  workdir.mkdir(parents=True, exist_ok=True)
  started = time.monotonic()
  meta = mnist_meta_split(config) if config.dataset == "mnist" else norb_meta_split(config)
  jax.block_until_ready(meta.train)
  data_seconds = time.monotonic() - started
  check_set_size(config, meta)
  model = variants.build_model(config, meta.train.shape[1])
  init = lambda key: model.init(key, len(meta.train_values), tuple(meta.train.shape[2:]))
  loss_fn = functools.partial(model.loss, batch_size=config.batch_size, set_size=config.set_size)
  train = meta.train
  if config.compute_dtype == "bfloat16":
    loss_fn = mixed_precision(loss_fn, jnp.bfloat16)
    train = train.astype(jnp.bfloat16)  # cast once here, not the whole population inside every step
  state = trainer.fit(config, workdir, run=config.model, init=init, loss_fn=loss_fn, batch=(train,),
                      evaluation_fields=EVALUATION_FIELDS)
  del train  # the bfloat16 copy, if one was made
  evaluation_started = time.monotonic()
  train_summaries = (training_summaries(model, state.params, meta.train, config) if needs_training_summaries(config)
                     else None)
  meta = meta._replace(train=None)  # free the training distributions before the evaluation
  results = {"model": config.model, "split": config.split, "transform": config.transform, **variants.options(config),
             "unseen_values": list(meta.unseen_values), **evaluate(model, state, meta, config, train_summaries),
             "training_values": list(meta.train_values), "train_steps": int(state.step)}
  # Beside the training windows' seconds that trainer.fit logs; apart from results.json, which stays reproducible.
  trainer.MetricsLog(workdir / "wall_times.jsonl", config.model).write(results["train_steps"], {
      "data_seconds": data_seconds, "evaluation_seconds": time.monotonic() - evaluation_started,
      "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}"})
  trainer.write_results(workdir, results)
  # Runs resume: rerunning a workdir with a larger num_steps extends it, and these files keep the curve.
  trainer.write_results(workdir, results, f"results_at_step_{results['train_steps']}.json")
  with figure(workdir / "accuracy.png", figsize=(6, 3.2)) as (_, ax):
    ax.plot(results["unseen_values"], results["test_accuracy"], "o-", label=config.model)
    for value in results["training_values"]:
      ax.axvline(value, color="gray", alpha=0.3)
    ax.set_xlabel(f"{config.transform} value (grey: training values)")
    ax.set_ylabel("linear-probe test accuracy")
    ax.set_title(f"{config.transform}, {config.split} split: mean {results['mean_test_accuracy']:.3f}", fontsize=9)
  return results
