"""Table 2, Table 1 and Figure 7 of Wu et al. on MNIST, from the runs of the grid.

    python -m experiments.mnist_tables --workdir DIR [--config.run_missing=True] \
        [--config.run.data.manual_dir=../shared/data/mnist] [--config.run.num_steps=3000]

Each cell (transformation, split, model) lives in DIR/<transform>/<split>/<model>; its results.json is collected,
and with run_missing a cell without one is trained and evaluated first (`invariance.run`, resumable). Writes
DIR/table2.md (mean unseen accuracy, with the paper's numbers), DIR/table1.md (mean code distance between a test
image and its transformed versions, for the MetaVAE amortized over each transformation), DIR/figure7_<split>.png,
and bar charts of both tables (DIR/table2_bars.png, DIR/table1_bars.png).
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import optax

from experiments import cli, invariance, trainer
from experiments.data import mnist, splits, transforms
from experiments.plotting import figure
from meta_amortized.training import init_train_state

PAPER_TABLE2 = {"rotate": {"meta_vae": 0.885, "vhe_vampprior": 0.830, "vhe": 0.793},
                "scale": {"meta_vae": 0.893, "vhe_vampprior": 0.767, "vhe": 0.463},
                "shear": {"meta_vae": 0.844, "vhe_vampprior": 0.679, "vhe": 0.602}}
PAPER_TABLE1 = {"rotate": (1.65, 4.44, 4.09), "scale": (5.44, 2.16, 4.92), "shear": (3.79, 4.89, 1.47)}


def cell_config(config: ml_collections.ConfigDict, transform: str, split: str, model: str):
  run = ml_collections.ConfigDict(config.run.to_dict())
  run.transform, run.split, run.model = transform, split, model
  return run


def collect(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict:
  """{(transform, split, model): results} for every cell that has (or, with run_missing, gets) results."""
  found = {}
  for transform in config.transforms:
    for split in config.splits:
      for model in config.models:
        cell = workdir / transform / split / model
        if not (cell / "results.json").exists() and config.run_missing:
          invariance.run(cell_config(config, transform, split, model), cell)
        if (cell / "results.json").exists():
          found[(transform, split, model)] = json.loads((cell / "results.json").read_text())
  return found


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
      paper = PAPER_TABLE2[transform]
      lines.append(f"| {transform} | " + " | ".join(cells)
                   + f" | {paper['meta_vae']} / {paper['vhe_vampprior']} / {paper['vhe']} |")
    lines.append("")
  return "\n".join(lines)


def table1(config, workdir: pathlib.Path) -> tuple[str, dict[str, list[float]]]:
  """Code distances of the MetaVAE amortized over each transformation (rows) under each transformation (columns):
  the markdown table and {row: distances} of the trained rows."""
  data = mnist.load_mnist(pathlib.Path(config.run.data.data_dir).expanduser(), manual_dir=config.run.data.manual_dir)
  images = jnp.asarray(data["test"][0][:config.table1_images])
  lines = [f"Mean L2 distance between the code of one of {config.table1_images} test images and the codes of its "
           f"transformed versions (all values of the column's grid); MetaVAEs of the {config.table1_split} split.", "",
           "| amortized over \\ applied | rotate | scale | shear | paper |", "|---|---|---|---|---|"]
  rows = {}
  for row in config.transforms:
    cell = workdir / row / config.table1_split / "meta_vae"
    run = cell_config(config, row, config.table1_split, "meta_vae")
    run.eval_batch_size = min(run.eval_batch_size, config.table1_images)
    model = invariance.build_model(run)
    num_train = len(splits.mnist_split(row, config.table1_split)[0])
    template = init_train_state(model.init(jax.random.key(0), num_train), optax.adam(run.learning_rate))
    state = trainer.restore_latest(cell / "checkpoints" / "meta_vae", template)
    if state is None:
      lines.append(f"| {row} | not trained | | | |")
      continue
    distances = [invariance.code_distance(model, state.params, jax.random.key(i), images, column,
                                          transforms.VALUES[column], config=run)
                 for i, column in enumerate(("rotate", "scale", "shear"))]
    rows[row] = distances
    paper = " / ".join(str(v) for v in PAPER_TABLE1[row])
    lines.append(f"| {row} | " + " | ".join(f"{d:.2f}" for d in distances) + f" | {paper} |")
  return "\n".join(lines) + "\n", rows


def bar_charts(config, found, table1_rows: dict[str, list[float]], workdir: pathlib.Path) -> None:
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
    for j, column in enumerate(("rotate", "scale", "shear")):
      ax.bar([i + j * 0.27 for i in range(len(table1_rows))], [d[j] for d in table1_rows.values()], 0.27,
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


def run(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict:
  for field, allowed in (("transforms", sorted(splits.MNIST_GRIDS)), ("splits", splits.SPLIT_NAMES),
                         ("models", invariance.MODELS)):
    unknown = [v for v in config[field] if v not in allowed]
    if unknown:
      raise trainer.ConfigError(f"config.{field}={config[field]!r} is not allowed: {unknown} not in {list(allowed)}")
  trainer.check_choice(config, "table1_split", splits.SPLIT_NAMES)
  workdir.mkdir(parents=True, exist_ok=True)
  found = collect(config, workdir)
  (workdir / "table2.md").write_text(table2(config, found))
  text, table1_rows = table1(config, workdir)
  (workdir / "table1.md").write_text(text)
  figure7(config, found, workdir)
  bar_charts(config, found, table1_rows, workdir)
  return {f"{t}/{s}/{m}": r["mean_test_accuracy"] for (t, s, m), r in found.items()}


if __name__ == "__main__":
  cli.main("mnist_tables", run)
