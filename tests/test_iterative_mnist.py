"""The iterative-inference MNIST experiment end to end on its quick config."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import iterative_mnist, trainer
from experiments.configs import iterative_mnist as iterative_config
from tests.conftest import MNIST_MANUAL_DIR


def test_iterative_mnist_end_to_end(tmp_path, mnist_data_dir, monkeypatch):
  config = iterative_config.get_config("quick")
  config.data.manual_dir, config.data.data_dir = str(MNIST_MANUAL_DIR), str(mnist_data_dir)
  iterative_mnist.run(config, tmp_path)
  results = json.loads((tmp_path / "results.json").read_text())
  assert set(results["nll"]) == set(iterative_mnist.MODELS) == set(results["elbo_by_step"])
  assert results["train_steps"] == config.num_steps
  T = config.num_refinements
  for name, curve in results["elbo_by_step"].items():
    assert len(curve) == (1 if name == "standard" else config.eval_steps + 1)
    # The importance-weighted bound is above the ELBO of the same posterior: -log p(x) below -ELBO_T.
    assert 0 < results["nll"][name] < -curve[0 if name == "standard" else T]
  # The optimisers start where the iterative model starts: the prior, with the same decoder and samples.
  start = results["elbo_by_step"][results["optimizer_baseline_decoder"]][0]
  for curve in results["optimizer_baseline"].values():
    assert len(curve) == config.eval_steps + 1 and curve[0] == pytest.approx(start, rel=1e-6)
  for name in iterative_mnist.MODELS:  # kept for a resume, as reported
    kept = json.loads((tmp_path / "evaluations" / f"{name}.json").read_text())
    assert kept["made_under"]["step"] == config.num_steps
    assert kept["evaluation"] == {"nll": results["nll"][name], "elbo_by_step": results["elbo_by_step"][name]}
  assert (tmp_path / "elbo_by_step.png").stat().st_size > 0
  assert (tmp_path / "learning_curves.png").stat().st_size > 0
  # Run again, every model finished: the evaluations are read back, not made again, and the results are the same.
  def evaluated_again(*args):
    raise AssertionError("a finished model was evaluated again")

  monkeypatch.setattr(iterative_mnist, "evaluate", evaluated_again)
  assert json.loads(json.dumps(iterative_mnist.run(config, tmp_path))) == results


def test_iterative_training_gradients_follow_the_two_losses():
  """Encoder gradients are those of mean_t -ELBO_t, decoder gradients those of -ELBO_T."""
  config = iterative_config.get_config("quick")
  params, state = iterative_mnist.init(config, "iterative_gradient", jax.random.key(0))
  images = jax.random.uniform(jax.random.key(1), (30, 784))
  key = jax.random.key(2)
  loss_fn = functools.partial(iterative_mnist.loss, config=config, name="iterative_gradient")
  (loss, (metrics, _)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params, state, key, images)
  batch_key, binarize_key, bound_key = jax.random.split(key, 3)
  index = jax.random.randint(batch_key, (config.batch_size,), 0, 30)
  x = jax.random.bernoulli(binarize_key, images[index]).astype(jnp.float32)
  elbos = lambda p: iterative_mnist.refine(config, "iterative_gradient", p, bound_key, x, config.num_refinements).elbos
  encoder_grads = jax.jit(jax.grad(lambda p: -jnp.mean(elbos(p)[1:])))(params)["encoder"]
  decoder_grads = jax.jit(jax.grad(lambda p: -jnp.mean(elbos(p)[-1])))(params)["decoder"]
  np.testing.assert_allclose(float(loss), -float(jnp.mean(jax.jit(elbos)(params)[-1])), rtol=1e-5)
  for got, want in ((grads["encoder"], encoder_grads), (grads["decoder"], decoder_grads)):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  assert metrics["elbo"] == -loss


def test_iterative_mnist_config_errors_name_the_field(tmp_path):
  config = iterative_config.get_config("quick")
  config.models = ("standard", "ladder")
  with pytest.raises(trainer.ConfigError, match=r"config.models=.* \['ladder'\] not in"):
    iterative_mnist.run(config, tmp_path)
  config = iterative_config.get_config("quick")
  config.data.num_train_examples = 0
  with pytest.raises(trainer.ConfigError, match=r"config.data.num_train_examples=0 .* \[1, 60000\]"):
    iterative_mnist.run(config, tmp_path)
  config = iterative_config.get_config("quick")
  config.eval_steps = 1
  with pytest.raises(trainer.ConfigError, match=r"config.eval_steps=1 .* config.num_refinements=2"):
    iterative_mnist.run(config, tmp_path)
