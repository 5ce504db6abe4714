"""Standard against iterative amortized inference on dynamically binarised MNIST (Marino et al., Table 1 there).

Four models with the same decoder (64 -> 512 -> 512 -> 784 ELU, Bernoulli) and the same budget:
  standard                         q(z | x) from a 2 x 512 ELU encoder, one sample per ELBO;
  iterative_gradient               T refinements from the prior by an iterative encoder that sees x, the
                                   posterior and the ELBO gradients as [log(|g| + 1e-5), sign(g)];
  iterative_gradient_standardized  the same with the gradients standardised per example;
  iterative_error                  the same encoder seeing the errors x - E[x | z] and (z - mu_p) / var_p.
The iterative models use `num_samples` samples per ELBO and are trained as the paper: the encoder on the mean
over steps of -ELBO_t, the decoder on -ELBO_T (`iterative.iterative_loss`).

Training images are binarised afresh at every use; the test images once, with a fixed seed. Reported:
the test -log p(x) by the importance-weighted bound with `nll_samples` samples from the final posterior; the
test ELBO after each refinement step up to `eval_steps` (past the T of training, to see that it stays put);
and the same curve for SGD and Adam on the posterior parameters from the same start (the prior), with the
iterative_gradient model's decoder. Each model's evaluation is kept in workdir/evaluations/<model>.json
(`trainer.evaluate_once`): a run resumed after some models finished does not evaluate them again.

    python -m experiments.iterative_mnist --config experiments/configs/iterative_mnist.py \
        --config.data.manual_dir=../shared/data/mnist --workdir workdirs/iterative_mnist
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

from experiments import cli, rundir, trainer
from experiments.data import mnist
from experiments.plotting import figure, learning_curves
from meta_amortized import iterative, objectives
from meta_amortized.distributions import Bernoulli, DiagonalGaussian
from meta_amortized.networks import Decoder, Encoder, IterativeEncoder

MODELS = ("standard", "iterative_gradient", "iterative_gradient_standardized", "iterative_error")
# Which models run, and what only their evaluation reads: see `trainer.fit`.
EVALUATION_FIELDS = ("models", "test_binarization_seed", "eval_steps", "eval_examples", "nll_samples", "nll_examples",
                     "nll_chunk", "baseline_lrs")
_SIGNALS = {"iterative_gradient": ("gradient", "log_sign"),
            "iterative_gradient_standardized": ("gradient", "standardize"),
            "iterative_error": ("error", "log_sign")}


def validate(config: ml_collections.ConfigDict) -> None:
  trainer.check_training(config)
  unknown = [m for m in config.models if m not in MODELS]
  if unknown or not config.models:
    raise trainer.ConfigError(f"config.models={config.models!r} is not allowed: {unknown} not in {list(MODELS)}")
  trainer.check_positive(config, "batch_size", "latent_dim", "hidden", "num_refinements", "num_samples",
                         "eval_steps", "eval_examples", "nll_samples", "nll_examples", "nll_chunk", "baseline_lrs")
  if config.eval_steps < config.num_refinements:
    raise trainer.ConfigError(f"config.eval_steps={config.eval_steps} is not allowed; expected at least "
                              f"config.num_refinements={config.num_refinements}")
  trainer.check_count(config, "data.num_train_examples", mnist.SIZES["train"])
  for field in ("eval_examples", "nll_examples"):
    if config[field] > mnist.SIZES["test"] or config[field] % config.nll_chunk:
      raise trainer.ConfigError(f"config.{field}={config[field]} is not allowed; expected at most "
                                f"{mnist.SIZES['test']} and a multiple of config.nll_chunk={config.nll_chunk}")


def networks(config):
  hidden = (config.hidden, config.hidden)
  decoder = Decoder(hidden, 784, nn.elu)
  return decoder, Encoder(hidden, config.latent_dim, nn.elu), IterativeEncoder(hidden, config.latent_dim)


def init(config, name: str, key: jax.Array) -> tuple[dict, dict]:
  """(params, state = {}) of model `name`."""
  decoder, encoder, iterative_encoder = networks(config)
  encoder_key, decoder_key = jax.random.split(key)
  x = jnp.zeros((1, 784))
  if name == "standard":
    encoder_params = encoder.init(encoder_key, x)
  else:
    q = DiagonalGaussian(jnp.zeros((1, config.latent_dim)), jnp.zeros((1, config.latent_dim)))
    signal, encoding = _SIGNALS[name]
    # Gradients w.r.t. mean and log-variance, as [log|g|, sign g] or standardised; or the errors (x and z).
    signal_size = (784 + config.latent_dim if signal == "error"
                   else (4 if encoding == "log_sign" else 2) * config.latent_dim)
    encoder_params = iterative_encoder.init(encoder_key, x, q, jnp.zeros((1, signal_size)))
  return {"encoder": encoder_params, "decoder": decoder.init(decoder_key, jnp.zeros((1, config.latent_dim)))}, {}


def _log_likelihood(decoder, decoder_params, x):
  return lambda z: Bernoulli(decoder.apply(decoder_params, z)).log_prob(x)


def refine(config, name: str, params: dict, key: jax.Array, x: jax.Array, num_steps: int):
  """The iterative model's posteriors (num_steps + 1, B, Z) and ELBOs (num_steps + 1, B) on binary x."""
  decoder, _, iterative_encoder = networks(config)
  signal, encoding = _SIGNALS[name]
  return iterative.iterative_inference(
      key, x, encoder_fn=lambda x, q, s: iterative_encoder.apply(params["encoder"], x, q, s),
      log_likelihood_fn=_log_likelihood(decoder, params["decoder"], x), num_steps=num_steps,
      latent_dim=config.latent_dim, signal=signal, gradient_encoding=encoding, num_samples=config.num_samples,
      observation_mean_fn=lambda z: jax.nn.sigmoid(decoder.apply(params["decoder"], z)))


def loss(params, state, key, images, *, config, name: str):
  """One step's (loss = -ELBO_T, (metrics, state)) on a batch binarised afresh; for the iterative models the
  gradient is routed by `iterative.iterative_loss` (encoder: mean over steps of -ELBO_t, decoder: -ELBO_T)."""
  batch_key, binarize_key, bound_key = jax.random.split(key, 3)
  index = jax.random.randint(batch_key, (config.batch_size,), 0, images.shape[0])
  x = jax.random.bernoulli(binarize_key, images[index]).astype(jnp.float32)
  decoder, encoder, _ = networks(config)
  if name == "standard":
    bound = objectives.elbo(bound_key, encoder.apply(params["encoder"], x),
                            _log_likelihood(decoder, params["decoder"], x))
    value = -jnp.mean(bound)
    return value, ({"elbo": -value}, state)
  elbos_fn = lambda enc, dec: refine(config, name, {"encoder": enc, "decoder": dec}, bound_key, x,
                                     config.num_refinements).elbos
  decoder_loss, encoder_loss = iterative.iterative_loss(elbos_fn, params["encoder"], params["decoder"])
  return decoder_loss, ({"elbo": -decoder_loss, "encoder_loss": encoder_loss}, state)


def final_posterior(config, name, params, key, x, num_steps: int) -> tuple[DiagonalGaussian, jax.Array]:
  """The posterior used for the NLL (after T refinements, or the standard encoder's) and the ELBO curve
  over `num_steps` >= T refinements ((1,) for the standard model). The first T steps, hence the posterior,
  do not depend on `num_steps`."""
  if name == "standard":
    decoder, encoder, _ = networks(config)
    q = encoder.apply(params["encoder"], x)
    return q, objectives.elbo(key, q, _log_likelihood(decoder, params["decoder"], x))[None]
  result = refine(config, name, params, key, x, num_steps)
  return jax.tree.map(lambda a: a[config.num_refinements], result.posteriors), result.elbos


def optimizer_curve(config, decoder_params, key, x, optimizer: optax.GradientTransformation) -> jax.Array:
  """Mean ELBO (eval_steps + 1,) of plain optimisation of each example's posterior parameters from the prior."""
  decoder = networks(config)[0]
  zeros = jnp.zeros(x.shape[:-1] + (config.latent_dim,))
  q = DiagonalGaussian(zeros, zeros)
  bound = lambda q, k: objectives.elbo(k, q, _log_likelihood(decoder, decoder_params, x),
                                       num_samples=config.num_samples)

  def step(carry, step_key):
    q, opt_state = carry
    value, grads = jax.value_and_grad(lambda q: -jnp.sum(bound(q, step_key)))(q)
    updates, opt_state = optimizer.update(grads, opt_state, q)
    return (optax.apply_updates(q, updates), opt_state), -value / x.shape[0]

  keys = jax.random.split(key, config.eval_steps + 1)
  (q, _), values = jax.lax.scan(step, (q, optimizer.init(q)), keys[:-1])
  return jnp.concatenate([values, jnp.mean(bound(q, keys[-1]))[None]])


def _chunks(config, test_x: jax.Array, n: int) -> list[jax.Array]:
  """The first `n` test images in chunks of config.nll_chunk."""
  return [test_x[i:i + config.nll_chunk] for i in range(0, n, config.nll_chunk)]


def evaluate(config, name: str, params: dict, eval_key: jax.Array, test_x: jax.Array) -> dict:
  """{"nll": the test -log p(x) of model `name` (the importance-weighted bound with config.nll_samples samples from
  its final posterior, on the first config.nll_examples images), "elbo_by_step": its test ELBO after each
  refinement step, 0 to config.eval_steps, on the first config.eval_examples images}."""
  final = jax.jit(functools.partial(final_posterior, config, name), static_argnums=3)
  decoder = networks(config)[0]
  iwae = jax.jit(lambda p, k, q, x: objectives.iwae_bound(k, q, _log_likelihood(decoder, p["decoder"], x),
                                                           num_samples=config.nll_samples))
  curves, bounds = [], []
  for i, x in enumerate(_chunks(config, test_x, max(config.eval_examples, config.nll_examples))):
    key = jax.random.fold_in(eval_key, i)
    on_curve = i * config.nll_chunk < config.eval_examples  # past the curve's images, T steps suffice
    q, elbos = final(params, key, x, config.eval_steps if on_curve else config.num_refinements)
    if on_curve:
      curves.append(jnp.mean(elbos, axis=-1))
    if i * config.nll_chunk < config.nll_examples:
      bounds.append(iwae(params, jax.random.fold_in(key, 1), q, x))
  return {"nll": -float(jnp.mean(jnp.concatenate(bounds))),
          "elbo_by_step": [float(v) for v in jnp.mean(jnp.stack(curves), axis=0)]}


@rundir.owns_workdir
def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict:
  validate(config)
  workdir.mkdir(parents=True, exist_ok=True)
  # Only the test images evaluated are read: with JAX's default jax_threefry_partitionable each pixel's bit is
  # drawn from its own index, so the first n images binarise as they would within the whole test set.
  arrays = mnist.load_mnist(pathlib.Path(config.data.data_dir).expanduser(), manual_dir=config.data.manual_dir,
                            num_examples={"train": config.data.num_train_examples,
                                          "test": max(config.eval_examples, config.nll_examples)})
  train_images = jnp.asarray(arrays["train"][0].reshape(-1, 784))
  test_x = jax.random.bernoulli(jax.random.key(config.test_binarization_seed),
                                jnp.asarray(arrays["test"][0].reshape(-1, 784))).astype(jnp.float32)
  steps_per_epoch = train_images.shape[0] // config.batch_size
  # Adam, its learning rate decayed by 0.999 per epoch (Marino et al.).
  optimizer = optax.adam(optax.exponential_decay(config.learning_rate, steps_per_epoch, 0.999, staircase=True))

  nll, elbo_by_step, params_of = {}, {}, {}
  eval_key = jax.random.fold_in(jax.random.key(config.seed), 1)
  for name in config.models:
    state = trainer.fit(config, workdir, run=name, init=functools.partial(init, config, name),
                        loss_fn=functools.partial(loss, config=config, name=name),
                        batch=(train_images,), optimizer=optimizer, evaluation_fields=EVALUATION_FIELDS)
    params_of[name] = state.params
    evaluation = trainer.evaluate_once(workdir, name, config, state,
                                       functools.partial(evaluate, config, name, state.params, eval_key, test_x))
    nll[name], elbo_by_step[name] = evaluation["nll"], evaluation["elbo_by_step"]

  baseline_decoder = "iterative_gradient" if "iterative_gradient" in params_of else config.models[0]
  optimizer_baseline = {}
  for opt_name, make in (("sgd", optax.sgd), ("adam", optax.adam)):
    best = None
    for lr in config.baseline_lrs:
      curve = jax.jit(functools.partial(optimizer_curve, config, optimizer=make(lr)))
      values = jnp.mean(jnp.stack([curve(params_of[baseline_decoder]["decoder"], jax.random.fold_in(eval_key, i), x)
                                   for i, x in enumerate(_chunks(config, test_x, config.eval_examples))]), axis=0)
      if best is None or values[-1] > best[1][-1]:
        best = (lr, values)
    optimizer_baseline[f"{opt_name} (lr {best[0]:g})"] = [float(v) for v in best[1]]

  results = {"nll": nll, "elbo_by_step": elbo_by_step, "optimizer_baseline": optimizer_baseline,
             "optimizer_baseline_decoder": baseline_decoder, "train_steps": config.num_steps,
             "nll_samples": config.nll_samples, "nll_examples": config.nll_examples,
             "eval_examples": config.eval_examples, "num_refinements": config.num_refinements}
  trainer.write_results(workdir, results)
  with figure(workdir / "elbo_by_step.png", figsize=(6, 3.5)) as (_, ax):
    for name, values in elbo_by_step.items():
      if len(values) > 1:
        ax.plot(range(len(values)), values, label=name)
      else:
        ax.axhline(values[0], color="k", ls="--", label=name)
    for name, values in optimizer_baseline.items():
      ax.plot(range(len(values)), values, ls=":", label=name)
    ax.axvline(config.num_refinements, color="gray", alpha=0.4)
    ax.set_ylim(np.percentile([v for vs in elbo_by_step.values() for v in vs], 5) - 20,
                max(max(v) for v in elbo_by_step.values()) + 5)
    ax.set_xlabel("inference step (grey: T of training)")
    ax.set_ylabel("test ELBO (nats)")
    ax.legend(fontsize=7)
  learning_curves(workdir)
  return results


if __name__ == "__main__":
  cli.main("iterative_mnist", run)
