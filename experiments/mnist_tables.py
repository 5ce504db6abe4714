"""Table 2, Table 1 and Figure 7 of Wu et al. on MNIST, from the runs of the grid.

    python -m experiments.mnist_tables --workdir DIR [--config.run_missing=True] \
        [--config.run.data.manual_dir=../shared/data/mnist] [--config.run.num_steps=3000]

Each cell (transformation, split, model) lives in DIR/<transform>/<split>/<model>; its results.json is collected.
With run_missing, a cell is first trained and evaluated (`invariance.run`, resumable) at each of `budgets` and at
run.num_steps that lies past its last evaluation: a cell without results starts, one evaluated at fewer steps
resumes from its checkpoint, and every evaluation stays in the cell's results_at_step_<N>.json. Writes
DIR/table2.md (mean unseen accuracy, with the paper's numbers), DIR/table1.md (mean code distance between a test image
and its transformed versions, for the MetaVAE amortized over each transformation (or the VAE control, with
table1_model='vae'); again with every set drawn from the untransformed images, beside the distances that fresh sets and
different images make), DIR/figure7_<split>.png, bar charts of both tables (DIR/table2_bars.png, DIR/table1_bars.png),
the accuracy of every cell against its training steps (DIR/accuracy_vs_steps.md and .png), and the wall-clock minutes
behind each cell (DIR/wall_times.md).
"""

from __future__ import annotations

import itertools
import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from experiments import cli, invariance, paper, rundir, trainer, variants
from experiments.data import mnist, splits, transforms
from experiments.plotting import figure
from meta_amortized.training import init_train_state

PAPER_TABLE2 = paper.TABLE2
TABLE1_COLUMNS = ("rotate", "scale", "shear")
TABLE1_MODELS = ("meta_vae", "vae")  # the paper's MetaVAE, and the VAE control whose codes ignore the set
PAPER_TABLE1 = paper.TABLE1


def cell_config(config: ml_collections.ConfigDict, transform: str, split: str, model: str):
  run = ml_collections.ConfigDict(config.run.to_dict())
  run.transform, run.split, run.model = transform, split, model
  return run


def cells(config: ml_collections.ConfigDict):
  """The grid's (transform, split, model) cells, in the order they are run."""
  return itertools.product(config.transforms, config.splits, config.models)


def evaluations(cell: pathlib.Path) -> dict[int, dict]:
  """{training steps: results} of every evaluation a cell has kept (its results_at_step_<N>.json)."""
  found = {}
  for path in cell.glob("results_at_step_*.json"):
    results = json.loads(path.read_text())
    found[results["train_steps"]] = results
  return dict(sorted(found.items()))


def collect(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict:
  """{(transform, split, model): results} for every cell that has (or, with run_missing, gets) results."""
  found = {}
  for transform, split, model in cells(config):
    cell = workdir / transform / split / model
    # Results of a cell trained under another config are not this config's: the same check as resuming it.
    trainer.check_config_record(cell_config(config, transform, split, model), trainer.checkpoint_directory(cell, model),
                                invariance.EVALUATION_FIELDS)
    if config.run_missing:
      done = evaluations(cell)
      last = max(done, default=0)
      for steps in sorted(set(config.budgets) | {config.run.num_steps}):
        if steps <= last:
          if steps not in done:
            logging.warning("%s/%s/%s: budget %d is below the %d steps already trained; not evaluated (a budget "
                            "needs a fresh workdir)", transform, split, model, steps, last)
          continue
        run = cell_config(config, transform, split, model)
        run.num_steps = steps
        invariance.run(run, cell)
    if (cell / "results.json").exists():
      found[(transform, split, model)] = json.loads((cell / "results.json").read_text())
  return found


def accuracy_vs_steps(config, workdir: pathlib.Path) -> dict[tuple[str, str, str], dict[int, float]]:
  """Writes accuracy_vs_steps.md and .png: every cell's mean unseen accuracy at each evaluated number of training
  steps, one panel per transformation. Returns {(transform, split, model): {steps: accuracy}}."""
  curves = {}
  for transform, split, model in cells(config):
    kept = evaluations(workdir / transform / split / model)
    if kept:
      curves[(transform, split, model)] = {n: r["mean_test_accuracy"] for n, r in kept.items()}
  steps = sorted({n for curve in curves.values() for n in curve})
  lines = ["Mean linear-probe accuracy on the unseen values after each number of training steps.", "",
           "| transformation | split | model | " + " | ".join(str(n) for n in steps) + " |",
           "|---" * (len(steps) + 3) + "|"]
  for (transform, split, model), curve in curves.items():
    points = [f"{curve[n]:.3f}" if n in curve else "" for n in steps]
    lines.append(f"| {transform} | {split} | {model} | " + " | ".join(points) + " |")
  (workdir / "accuracy_vs_steps.md").write_text("\n".join(lines) + "\n")
  with figure(workdir / "accuracy_vs_steps.png", 1, len(config.transforms),
              figsize=(4.5 * len(config.transforms), 3.2), squeeze=False) as (_, axes):
    for ax, transform in zip(axes[0], config.transforms):
      for (t, split, model), curve in curves.items():
        if t == transform:
          ax.plot(list(curve), list(curve.values()), "o-", ms=3, label=f"{model}, {split}")
      ax.set_xscale("log")
      ax.set_title(transform, fontsize=9)
      ax.set_xlabel("training steps")
      ax.set_ylabel("mean unseen accuracy")
      ax.legend(fontsize=7)
  return curves


def wall_time(cell: pathlib.Path, model: str, steps: int, log_every: int) -> dict | None:
  """The wall-clock seconds behind a cell's evaluation at `steps`, from its wall_times.jsonl: training (the sum of
  the logged windows up to `steps`), and the data preparation and evaluation of the last call that evaluated at
  `steps`. None where a window or that evaluation was not recorded (runs that predate the log)."""
  path = cell / "wall_times.jsonl"
  if not path.exists():
    return None
  windows, evaluation = rundir.logged_seconds(path, model, steps)
  # Every window up to `steps` (a budget that is not a multiple of log_every adds one of its own).
  if evaluation is None or not {*range(log_every, steps + 1, log_every), steps} <= windows.keys():
    return None
  return {"train_seconds": sum(windows.values()), "data_seconds": evaluation["data_seconds"],
          "evaluation_seconds": evaluation["evaluation_seconds"], "devices": evaluation["devices"]}


def wall_times(config, found, workdir: pathlib.Path) -> str:
  lines = ["Wall-clock minutes behind each cell's results.json (as measured by the run, pauses included).", "",
           "| transformation | split | model | steps | data | training | evaluation | total | devices |",
           "|---|---|---|---|---|---|---|---|---|"]
  for (transform, split, model), results in found.items():
    steps = results["train_steps"]
    timed = wall_time(workdir / transform / split / model, model, steps, config.run.log_every)
    if timed is None:
      lines.append(f"| {transform} | {split} | {model} | {steps} | not recorded | | | | |")
      continue
    minutes = [timed[k] / 60 for k in ("data_seconds", "train_seconds", "evaluation_seconds")]
    lines.append(f"| {transform} | {split} | {model} | {steps} | "
                 + " | ".join(f"{m:.2f}" for m in (*minutes, sum(minutes))) + f" | {timed['devices']} |")
  return "\n".join(lines) + "\n"


def _accuracy_cell(results: dict | None) -> str:
  if results is None:
    return "not run"
  return f"{results['mean_test_accuracy']:.3f} ({results['train_steps']} steps)"


def table2(config, found) -> str:
  lines = []
  for split in config.splits:
    lines += [f"### {split} split: mean linear-probe accuracy on the unseen values", "",
              "| transformation | " + " | ".join(config.models) + " | paper: MetaVAE / VHE+VampPrior / VHE |",
              "|---" * (len(config.models) + 2) + "|"]
    for transform in config.transforms:
      cells = [_accuracy_cell(found.get((transform, split, m))) for m in config.models]
      reported = PAPER_TABLE2[transform]
      lines.append(f"| {transform} | " + " | ".join(cells)
                   + f" | {reported['meta_vae']} / {reported['vhe_vampprior']} / {reported['vhe']} |")
    lines.append("")
  return "\n".join(lines)


def code_distances(model, params, images: jax.Array, run: ml_collections.ConfigDict, *, sets: str) -> list[float]:
  """A row of Table 1: `invariance.code_distance` of images under each of TABLE1_COLUMNS' grids."""
  return [invariance.code_distance(model, params, jax.random.key(i), images, column, transforms.VALUES[column],
                                   config=run, sets=sets)
          for i, column in enumerate(TABLE1_COLUMNS)]


def table1(config, workdir: pathlib.Path) -> tuple[str, dict[str, dict]]:
  """Code distances of the `table1_model` (the MetaVAE unless set) trained on each transformation (rows) under
  each transformation (columns), with each code's sets from its own distribution (Table 1) and, second, with every
  set from the untransformed images, beside the distance that fresh sets alone make and the distance between
  different images: the markdown tables and, for each trained row, {"own_sets": Table 1's distances, "base_sets":
  the second table's, "fresh_sets_only": ..., "different_images": ...}."""
  data = mnist.load_mnist(pathlib.Path(config.run.data.data_dir).expanduser(), manual_dir=config.run.data.manual_dir,
                          num_examples={"test": config.table1_images})
  images = jnp.asarray(data["test"][0])
  own = [f"Mean L2 distance between the code of one of {config.table1_images} test images and the codes of its "
         f"transformed versions (all values of the column's grid), each code with sets of its own distribution; "
         f"{config.table1_model} models of the {config.table1_split} split.", "",
         "| amortized over \\ applied | rotate | scale | shear | paper |", "|---|---|---|---|---|"]
  base = ["The same distances with the sets of every code drawn from the untransformed images (only the query is "
          "transformed; where these exceed the ones above, the set undoes part of the transformation), the "
          "distance between two codes of the same untransformed image with fresh sets, and that between the codes "
          "of different untransformed images.", "",
          "| amortized over \\ applied | rotate | scale | shear | fresh sets only | different images |",
          "|---|---|---|---|---|---|"]
  rows = {}
  for row in config.transforms:
    cell = workdir / row / config.table1_split / config.table1_model
    run = cell_config(config, row, config.table1_split, config.table1_model)
    run.eval_batch_size = min(run.eval_batch_size, config.table1_images)
    checkpoints = trainer.checkpoint_directory(cell, config.table1_model)
    trainer.check_config_record(run, checkpoints, invariance.EVALUATION_FIELDS)  # before the model is built from run
    model = variants.build_model(run)
    num_train = len(splits.mnist_split(row, config.table1_split)[0])
    template = jax.eval_shape(
        lambda key: init_train_state(*model.init(key, num_train)[:1], optax.adam(run.learning_rate)),
        jax.random.key(0))
    state = trainer.restore_latest(checkpoints, template)
    if state is None:
      own.append(f"| {row} | not trained | | | |")
      base.append(f"| {row} | not trained | | | | |")
      continue
    own_sets = code_distances(model, state.params, images, run, sets="own")
    # The identity (a rotation by 0) under code_distance: each image against itself, only the sets redrawn.
    fresh_sets = invariance.code_distance(model, state.params, jax.random.key(len(TABLE1_COLUMNS)), images, "rotate",
                                          (invariance.BASE_VALUES["rotate"],), config=run)
    spread = invariance.code_spread(model, state.params, jax.random.key(len(TABLE1_COLUMNS) + 1), images, config=run)
    reported = " / ".join(str(v) for v in PAPER_TABLE1[row])
    own.append(f"| {row} | " + " | ".join(f"{d:.2f}" for d in own_sets) + f" | {reported} |")
    base_sets = code_distances(model, state.params, images, run, sets="base")
    base.append(f"| {row} | " + " | ".join(f"{d:.2f}" for d in base_sets) + f" | {fresh_sets:.2f} | {spread:.2f} |")
    rows[row] = {"own_sets": own_sets, "base_sets": base_sets, "fresh_sets_only": fresh_sets,
                 "different_images": spread}
  return "\n".join(own + [""] + base) + "\n", rows


def bar_charts(config, found, table1_rows: dict[str, dict], workdir: pathlib.Path) -> None:
  """table2_bars.png: mean unseen accuracy per transformation and model, one panel per split, the paper's
  MetaVAE as a black tick; table1_bars.png: the code distances, grouped by what the MetaVAE was amortized over."""
  width = 0.8 / len(config.models)
  with figure(workdir / "table2_bars.png", 1, len(config.splits), figsize=(4.5 * len(config.splits), 3.2),
              squeeze=False) as (_, axes):
    for ax, split in zip(axes[0], config.splits):
      for j, model in enumerate(config.models):
        heights = [found[(t, split, model)]["mean_test_accuracy"] if (t, split, model) in found else 0.0
                   for t in config.transforms]
        ax.bar([i + j * width for i in range(len(config.transforms))], heights, width, label=model)
      ax.scatter([i + 0.4 - width / 2 for i in range(len(config.transforms))],
                 [PAPER_TABLE2[t]["meta_vae"] for t in config.transforms], marker="_", s=300, color="k",
                 label="paper MetaVAE")
      ax.set_xticks([i + 0.4 - width / 2 for i in range(len(config.transforms))], config.transforms)
      ax.set_ylim(0.0, 1.0)
      ax.set_title(f"{split} split (missing cells: no bar)", fontsize=9)
      ax.set_ylabel("mean unseen accuracy")
      ax.legend(fontsize=7)
  with figure(workdir / "table1_bars.png", figsize=(5, 3.2)) as (_, ax):
    for j, column in enumerate(TABLE1_COLUMNS):
      ax.bar([i + j * 0.27 for i in range(len(table1_rows))], [d["own_sets"][j] for d in table1_rows.values()], 0.27,
             label=f"applied: {column}")
    ax.set_xticks([i + 0.27 for i in range(len(table1_rows))], [f"amortized over {r}" for r in table1_rows])
    ax.set_ylabel("mean code distance")
    ax.legend(fontsize=7)


def figure7(config, found, workdir: pathlib.Path) -> None:
  for split in config.splits:
    path = workdir / f"figure7_{split}.png"
    with figure(path, 1, len(config.transforms), figsize=(4.5 * len(config.transforms), 3.2),
                squeeze=False) as (_, axes):
      for ax, transform in zip(axes[0], config.transforms):
        for model in config.models:
          if (transform, split, model) in found:
            r = found[(transform, split, model)]
            ax.plot(r["unseen_values"], r["test_accuracy"], "o-", ms=3, label=model)
        for value in splits.mnist_split(transform, split)[0]:
          ax.axvline(value, color="gray", alpha=0.25)
        ax.set_title(f"{transform}, {split} split", fontsize=9)
        ax.set_xlabel(f"{transform} value (grey: training values)")
        ax.set_ylabel("linear-probe accuracy")
        ax.legend(fontsize=7)


@rundir.owns_workdir
def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict:
  for field, allowed in (("transforms", sorted(splits.MNIST_GRIDS)), ("splits", splits.SPLIT_NAMES),
                         ("models", invariance.MODELS)):
    unknown = [v for v in config[field] if v not in allowed]
    if unknown:
      raise trainer.ConfigError(f"config.{field}={config[field]!r} is not allowed: {unknown} not in {list(allowed)}")
  trainer.check_choice(config, "table1_split", splits.SPLIT_NAMES)
  trainer.check_choice(config, "table1_model", TABLE1_MODELS)
  bad = [b for b in config.budgets if not (isinstance(b, int) and b > 0)]
  if bad:
    raise trainer.ConfigError(f"config.budgets={config.budgets!r} is not allowed: {bad} are not positive step counts")
  workdir.mkdir(parents=True, exist_ok=True)
  found = collect(config, workdir)
  (workdir / "table2.md").write_text(table2(config, found))
  (workdir / "wall_times.md").write_text(wall_times(config, found, workdir))
  text, table1_rows = table1(config, workdir)
  (workdir / "table1.md").write_text(text)
  figure7(config, found, workdir)
  bar_charts(config, found, table1_rows, workdir)
  accuracy_vs_steps(config, workdir)
  table2_accuracy = {f"{t}/{s}/{m}": r["mean_test_accuracy"] for (t, s, m), r in found.items()}
  # What `python -m experiments.report record` keeps: the Table 1 rows (the Table 2 cells are recorded each from its
  # own workdir).
  trainer.write_results(workdir, {"table1": table1_rows, "table1_model": config.table1_model,
                                  "table1_split": config.table1_split, "table1_images": config.table1_images,
                                  "mean_test_accuracy": table2_accuracy})
  return table2_accuracy


if __name__ == "__main__":
  cli.main("mnist_tables", run)
