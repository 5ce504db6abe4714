"""Results as data: the result file of every run behind a reported number, and the tables made from them.

    python -m experiments.report record WORKDIR EXPERIMENT SETTING [--results_name results.json]
    python -m experiments.report tables [--out docs/results.md]   # and README.md's headline table
    python -m experiments.report figures                          # docs/figures/results.png

`record` keeps a finished run as results/<experiment>/<setting>/seed_<k>.json: its results.json (or another
results file of the workdir, such as an evaluation at an earlier step), the config, every session that trained or
evaluated it (git commit, uncommitted changes, machine, JAX devices: the workdir's provenance.jsonl) and the
minutes of training of each of its runs (wall_times.jsonl). `tables` reads every result file and writes the
tables of TABLES: each seed's value, their mean and standard deviation, and the paper's number beside them. The
seeds of one setting must differ in nothing but the seed; a table cell is never typed by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

from experiments import paper
from experiments.rundir import PROVENANCE_NAME, atomic_write_text, logged_seconds, read_jsonl

RESULTS_DIR = pathlib.Path(__file__).resolve().parent.parent / "results"
# Config fields that may differ between the seeds of one setting (where they run, not what they compute), at the top
# of the config or under a field (mnist_tables' `run`).
FREE_FIELDS = ("seed", "data.data_dir", "data.manual_dir", "checkpoint_every_seconds", "log_every")


# Config fields added after some result files were made, each with the value that runs the code as it was before
# the field: a config without the field ran with that value.
ADDED_FIELDS = {"decoder_variance": "learned", "likelihood_clamp": "none", "init": "flax"}


def _setting(config: dict[str, Any], field: str) -> Any:
  return config.get(field, ADDED_FIELDS.get(field.rsplit(".", 1)[-1], "<absent>"))


def _free(field: str) -> bool:
  return any(field == free or field.endswith(f".{free}") for free in FREE_FIELDS)


def _seed(config: dict[str, Any]) -> int:
  """The seed of a run's config: its own, or that of the runs it collects (mnist_tables' `run.seed`)."""
  return config["seed"] if "seed" in config else config["run"]["seed"]


@dataclasses.dataclass(frozen=True)
class Row:
  """One line of a table: `path` (dotted keys, integers index lists) into the results of `setting`'s seeds."""

  label: str
  setting: str
  path: str
  paper: float | None = None


@dataclasses.dataclass(frozen=True)
class Table:
  experiment: str
  title: str
  rows: tuple[Row, ...]
  scale: float = 1.0  # 100 for percentages
  digits: int = 3
  note: str = ""
  command: str = ""  # how each seed's workdir was made (K the seed)
  figure: str = ""  # a figure of `figures` shown under the table: (alt text, file name under docs/figures)


def _clustering_rows(setting: str) -> tuple[Row, ...]:
  rows = [Row(f"{setting}: VAE (one mixture)", setting, "clustering_error.vae", paper.CLUSTERING["vae"])]
  for n in (10, 20, 50):
    rows += [Row(f"{setting}: MetaVAE, N = {n}", setting, f"clustering_error.meta_vae_N{n}",
                 paper.CLUSTERING[f"meta_vae_N{n}"]),
             Row(f"{setting}: Bayes classifier given D, N = {n}", setting, f"bayes_error.set_conditional.N{n}")]
  return (*rows, Row(f"{setting}: Bayes classifier given the means", setting, "bayes_error.known_means"),
          *(Row(f"{setting}: MetaVAE, N = {n}: share of test mixtures above 20 % error", setting,
                f"mixtures_above_20pct_error.meta_vae_N{n}") for n in (10, 20, 50)))


def _n50_rows(settings: Sequence[tuple[str, str]]) -> tuple[Row, ...]:
  return tuple(Row(f"{label}: {what}", setting, path)
               for setting, label in settings
               for what, path in (("MetaVAE", "clustering_error.meta_vae_N50"),
                                  ("share of mixtures above 20 % error", "mixtures_above_20pct_error.meta_vae_N50"),
                                  ("Bayes classifier given D", "bayes_error.set_conditional.N50")))


TABLE1_TRANSFORMS = ("rotate", "scale", "shear")
TABLE2_MODELS = (("meta_vae", "MetaVAE"), ("vhe", "VHE"), ("vae", "VAE (set ignored)"), ("ns", "NS"),
                 ("vhe_vampprior", "VHE + VampPrior"))

BASELINE_VARIANTS = (("vhe", "sparse", "none", "VHE"), ("vhe", "sparse", "clamp", "VHE + clamp"),
                     ("vhe", "sparse", "init", "VHE + init"), ("vhe", "sparse", "clamp_init", "VHE + clamp + init"),
                     ("vhe_vampprior", "contiguous", "clamp_init", "VHE + VampPrior + clamp + init"),
                     ("meta_vae", "sparse", "clamp", "MetaVAE + clamp"))

TABLES: tuple[Table, ...] = (
    Table("clustering", "Clustering error on 1000 unseen mixtures (%)",
          (*_clustering_rows("1d"), *_clustering_rows("2d")), scale=100, digits=2,
          note="The paper's numbers (dimension not stated) stand beside both settings. The share of mixtures above "
               "20 % error counts failures in 2-D; in 1-D many mixtures overlap, and even the Bayes classifiers pass "
               "20 % on some, so there it counts overlap as much as failure.",
          command="python -m experiments.clustering --config.data_dim=D --config.seed=K (D = 1, 2; the default "
                  "budget)"),
    Table("clustering_2d_N50", "Clustering, 2-D, N = 50: how a decoder's component labels are set (error on unseen "
          "mixtures, %)",
          _n50_rows((("labels_fixed", "fixed by initialisation (the paper)"),
                     ("labels_matched", "both orders scored, the better kept"),
                     ("labels_anchored", "the component of the set's first point is 0 (default)"))),
          scale=100, digits=2,
          command="python -m experiments.clustering --config.data_dim=2 --config.set_sizes='(50,)' "
                  "--config.train_mixture_counts='()' --config.decoder_labels=L --config.seed=K"),
    Table("clustering_2d_N50", "Clustering, 2-D, N = 50: what limits the MetaVAE (error on unseen mixtures, %)",
          _n50_rows((("labels_anchored", "the default (anchored labels)"),
                     ("steps_12000", "12,000 steps instead of 3000"),
                     ("hidden_256", "width 256 instead of 128"),
                     ("mixtures_2000", "2000 training mixtures instead of 500"),
                     ("variance_known", "each decoder's variance the known component variance"),
                     ("variance_known_hidden_256", "the variance known, width 256"))),
          scale=100, digits=2,
          note="Each row changes one setting of the default (anchored labels) run; the runs other than the default "
               "skip the VAE (--config.vae_num_steps=1), which does not touch the MetaVAE.",
          command="python -m experiments.clustering --config.data_dim=2 --config.set_sizes='(50,)' "
                  "--config.train_mixture_counts='()' --config.seed=K with the row's change: --config.num_steps=12000, "
                  "--config.hidden=256, --config.num_train_mixtures=2000 or --config.decoder_variance=known"),
    Table("physics", "Inclined planes: MSE of the inferred friction over the paper's region (angles 20-70, lengths "
          "2-20)",
          (Row("MetaVAE", "default", "meta_vae_mse_in_region", paper.PLANES_MSE_BOUND),
           Row("VAE (L = 10, A = 45)", "default", "vae_mse_in_region"),
           Row("Bayes-optimal posterior mean (the plane known)", "default", "bayes_optimal_mse_in_region"),
           *(Row(f"{label}, {where} the training planes' span", "default", f"region_{key}_training_span.{model}")
             for key, where in (("within", "within"), ("beyond", "beyond"))
             for model, label in (("meta_vae", "MetaVAE"), ("bayes_optimal", "Bayes-optimal")))), digits=4,
          note="The paper's column is its bound, \"MSE < 0.001\", read off Figure 2. The region reaches past the "
               "training planes (lengths to 20, angles to 70, against at most 10 and 60). The figure: each test "
               "plane's MSE, the mean over the seeds (Figure 2 of the paper).", figure="physics_mse.png",
          command="python -m experiments.physics --config.seed=K (the default budget)"),
    Table("expfam", "Exponential families: MSE of the inferred parameter on unseen distributions",
          tuple(Row(f"{family}: {model}", "default", f"single.{family}.{key}")
                for family in ("gaussian", "lognormal", "exponential")
                for model, key in (("MetaVAE", "meta_vae"), ("VAE", "vae"))),
          note="The figure: the MSE against the true parameter, the mean over the seeds; grey, the training range "
               "(Figure 3 of the paper).", figure="expfam_single.png",
          command="python -m experiments.expfam --config.seed=K (the default budget)"),
    Table("expfam", "Exponential families, many families (Figure 4): MSE of the inferred parameter, the MetaVAE over "
          "30 Gaussian + 30 log-normal + 30 exponential distributions against one amortized over a single family",
          tuple(Row(f"{family}{'' if family in ('gaussian', 'lognormal', 'exponential') else ' (unseen family)'}: "
                    f"MetaVAE over {over}", "default", f"many.{family}.meta_vae_{key}")
                for family in ("gaussian", "lognormal", "exponential", "laplace", "weibull", "beta")
                for over, key in (("the three families", "90"), ("Gaussians", "gaussian"),
                                  ("log-normals", "lognormal"), ("exponentials", "exponential"))),
          figure="expfam_many.png"),
    Table("mnist_table2", "MNIST Table 2, sparse split, 3000 steps: mean linear-probe accuracy on unseen values",
          tuple(Row(f"{transform}: {label}", f"{transform}_{model}", "mean_test_accuracy",
                    paper.TABLE2[transform].get(model))
                for transform in ("rotate", "scale", "shear") for model, label in TABLE2_MODELS),
          command="python -m experiments.mnist_T --config.data.manual_dir=../shared/data/mnist --config.model=M "
                  "--config.split=sparse --config.num_steps=3000 --config.seed=K",
          note="Figure 7 below: the accuracy on each unseen value, mean and sd over the seeds (grey lines: the "
               "training values).", figure="figure7.png"),
    Table("mnist_table1", "MNIST Table 1: mean L2 distance between the code of a test image and the codes of its "
          "transformed versions (the MetaVAEs of the sparse split at 3000 steps, each code with sets of its own "
          "distribution)",
          (*(Row(f"amortized over {row}, {column} applied", "sparse_meta_vae", f"table1.{row}.own_sets.{j}",
                 paper.TABLE1[row][j])
             for row in TABLE1_TRANSFORMS for j, column in enumerate(TABLE1_TRANSFORMS)),
           *(Row(f"amortized over {row}, {label}", "sparse_meta_vae", f"table1.{row}.{key}")
             for row in TABLE1_TRANSFORMS
             for key, label in (("fresh_sets_only", "the same image, fresh sets only"),
                                ("different_images", "different images")))),
          digits=2,
          note="A small distance on the diagonal and larger ones off it is the paper's claim: the code is invariant to "
               "the transformation the MetaVAE was amortized over. The last rows are the scale to read them against: "
               "the distance that redrawing the sets alone makes, and that between the codes of different images "
               "(1000 test images). DIR/T/sparse/meta_vae is (or links to) the Table 2 run of transformation T and "
               "seed K.",
          command="python -m experiments.mnist_tables --workdir DIR --config.splits='(\"sparse\",)' "
                  "--config.models='(\"meta_vae\",)' --config.run.num_steps=3000 --config.run.seed=K "
                  "--config.run.data.manual_dir=../shared/data/mnist"),
    Table("iterative_mnist", "Iterative amortized inference (Marino et al.): test -log p(x) on binarised MNIST, "
          "nats (5000 importance samples)",
          (Row("standard amortized inference", "default", "nll.standard", paper.ITERATIVE_MNIST_NLL["standard"]),
           Row("iterative, ELBO gradients encoded", "default", "nll.iterative_gradient",
               paper.ITERATIVE_MNIST_NLL["iterative"]),
           Row("iterative, gradients standardised per example", "default", "nll.iterative_gradient_standardized"),
           Row("iterative, errors encoded", "default", "nll.iterative_error")), digits=2,
          note="The paper's numbers come after about a thousand epochs; the default budget is 20,000 steps of batch "
               "64 (about 21 epochs), the same for every model, so ours compare the models at equal cost rather than "
               "at convergence.",
          command="python -m experiments.iterative_mnist --config.data.manual_dir=../shared/data/mnist "
                  "--config.seed=K"),
    Table("mnist_baselines", "The original code's departures on MNIST (one seed): mean linear-probe accuracy at 600 "
          "steps (the epoch its inverted checkpoint selection keeps) and at 3000",
          tuple(Row(f"{transform}, {split}: {label}, {steps} steps",
                    f"{transform}_{split}_{model}_{variant}/step_{steps}", "mean_test_accuracy",
                    paper.TABLE2[transform][model])
                for transform in ("rotate", "scale")
                for model, split, variant, label in BASELINE_VARIANTS
                if not (model == "meta_vae" and transform == "rotate")
                for steps in (600, 3000)),
          note="clamp: Bernoulli probabilities clamped to [1e-7, 1 - 1e-7]; init: xavier_normal (gain sqrt 2) "
               "kernels and zero biases; both as the original code (docs/design.md section 2).",
          command="the Table 2 command with --config.likelihood_clamp=1e-7 and/or --config.init=xavier_sqrt2, "
                  "--config.num_steps=600, then again with 3000 in the same workdir (results_at_step_600.json and "
                  "results_at_step_3000.json)"),
)


@dataclasses.dataclass(frozen=True)
class Headline:
  """A line of the README's table: ours (mean and deviation over the seeds of `setting`) beside a floor or
  reference of the same runs (`floor_path`, or None) and the paper's number."""

  label: str
  experiment: str
  setting: str
  path: str
  floor_path: str | None
  paper: str
  scale: float = 1.0
  digits: int = 3


HEADLINES: tuple[Headline, ...] = (
    *(Headline(f"Clustering error, {d}, N = 50 (%)", "clustering", d, "clustering_error.meta_vae_N50",
               "bayes_error.set_conditional.N50", f"{100 * paper.CLUSTERING['meta_vae_N50']:.1f}", 100, 2)
      for d in ("1d", "2d")),
    Headline("Inclined planes: MSE of the friction over the paper's region", "physics", "default",
             "meta_vae_mse_in_region", "bayes_optimal_mse_in_region", f"< {paper.PLANES_MSE_BOUND}", digits=4),
    *(Headline(f"Table 2, {t}, sparse split, 3000 steps: MetaVAE accuracy", "mnist_table2", f"{t}_meta_vae",
               "mean_test_accuracy", None, str(paper.TABLE2[t]["meta_vae"])) for t in ("rotate", "scale", "shear")),
    *(Headline(f"Table 2, {t}, sparse split, 3000 steps: VHE accuracy", "mnist_table2", f"{t}_vhe",
               "mean_test_accuracy", None, str(paper.TABLE2[t]["vhe"])) for t in ("rotate", "scale", "shear")),
    *(Headline(f"Table 2, {t}, sparse split, 3000 steps: VAE accuracy (the set ignored)", "mnist_table2", f"{t}_vae",
               "mean_test_accuracy", None, "-") for t in ("rotate", "scale", "shear")),
)
README_START = "<!-- headline results: written by `python -m experiments.report tables`; do not edit by hand -->"
README_END = "<!-- end of headline results -->"


class ReportError(ValueError):
  """A result file is missing something, or the seeds of a setting disagree in more than their seed."""


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    return {k: v for key, value in tree.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}
  return {prefix[:-1]: tree}


def _lookup(results: dict[str, Any], path: str) -> float | None:
  value: Any = results
  for key in path.split("."):
    if isinstance(value, list) and key.isdigit() and int(key) < len(value):
      value = value[int(key)]
    elif isinstance(value, dict) and key in value:
      value = value[key]
    else:
      return None
  return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def record(workdir: pathlib.Path, experiment: str, setting: str, *, results_dir: pathlib.Path = RESULTS_DIR,
           results_name: str = "results.json") -> pathlib.Path:
  """Writes results_dir/experiment/setting/seed_<seed>.json from a finished workdir; returns its path."""
  workdir = pathlib.Path(workdir)
  results_path, provenance_path = workdir / results_name, workdir / PROVENANCE_NAME
  for path in (results_path, provenance_path):
    if not path.exists():
      raise ReportError(f"{path} does not exist: `record` needs a finished run made with provenance "
                        f"(rerun the command in {workdir}; a finished run is re-evaluated from its checkpoints)")
  lines = read_jsonl(provenance_path)
  finished = {line["finished"] for line in lines if "finished" in line}
  sessions = [line for line in lines if "config" in line]
  results = json.loads(results_path.read_text())
  # The results come from the last session that ran to its end (workdirs from before the "finished" lines: the
  # last session) and, for an evaluation at an earlier budget (results_at_step_600.json, say), from the last such
  # session that ran to the results' step count; the sessions after it, and their minutes, are not this result's.
  steps = results.get("train_steps")
  ended = [i for i, s in enumerate(sessions) if s["started"] in finished] or [len(sessions) - 1]
  last = next((i for i in reversed(ended) if steps is None or sessions[i]["config"].get("num_steps") == steps),
              ended[-1])
  config, sessions = sessions[last]["config"], sessions[:last + 1]
  minutes: dict[str, float] = {}
  evaluation: dict[str, float] = {}
  times = workdir / "wall_times.jsonl"
  for run in dict.fromkeys(line["run"] for line in read_jsonl(times)) if times.exists() else ():
    windows, evaluated = logged_seconds(times, run, steps)  # the windows up to `steps`, its evaluation there
    if windows:
      minutes[run] = sum(windows.values()) / 60
    if evaluated is not None:
      evaluation[run] = (evaluated.get("data_seconds", 0.0) + evaluated["evaluation_seconds"]) / 60
  entry = {"experiment": experiment, "setting": setting, "seed": _seed(config), "results_file": results_name,
           "results": results, "config": config,
           "training_minutes": {run: round(m, 2) for run, m in minutes.items()},
           "evaluation_minutes": {run: round(m, 2) for run, m in evaluation.items()},
           "sessions": [{k: v for k, v in s.items() if k != "config"} for s in sessions]}
  out = pathlib.Path(results_dir) / experiment / setting / f"seed_{_seed(config)}.json"
  out.parent.mkdir(parents=True, exist_ok=True)
  atomic_write_text(out, json.dumps(entry, indent=1) + "\n")
  return out


def load(results_dir: pathlib.Path, experiment: str, setting: str) -> list[dict[str, Any]]:
  """The result files of one setting, by seed; ReportError if their configs differ in more than FREE_FIELDS."""
  files = sorted((pathlib.Path(results_dir) / experiment / setting).glob("seed_*.json"),
                 key=lambda p: int(p.stem.split("_")[1]))
  entries = [json.loads(f.read_text()) for f in files]
  if entries:
    first = _flatten(entries[0]["config"])
    for f, entry in zip(files[1:], entries[1:], strict=True):
      other = _flatten(entry["config"])
      changed = sorted(k for k in set(first) | set(other)
                       if not _free(k) and _setting(first, k) != _setting(other, k))
      if changed:
        raise ReportError(f"{f} ran another config than {files[0]}: {', '.join(changed)} differ; the seeds of a "
                          f"setting may differ only in {', '.join(FREE_FIELDS)}")
  return entries


def _values(entries: Sequence[dict[str, Any]], path: str) -> list[float]:
  """The value at `path` of each result file that has one."""
  return [v for v in (_lookup(e["results"], path) for e in entries) if v is not None]


def _mean_and_deviation(values: Sequence[float]) -> tuple[float, float | None]:
  mean = sum(values) / len(values)
  if len(values) < 2:
    return mean, None
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def table_markdown(table: Table, results_dir: pathlib.Path) -> str:
  """The markdown of one table: a row per Row, a column per seed found, then mean, standard deviation, paper."""
  loaded = {row.setting: load(results_dir, table.experiment, row.setting) for row in table.rows}
  seeds = sorted({e["seed"] for entries in loaded.values() for e in entries})
  fmt = lambda v: "" if v is None else f"{v * table.scale:.{table.digits}f}"  # noqa: E731
  header = ["", *(f"seed {s}" for s in seeds), "mean", "sd", "paper"]
  lines = [f"### {table.title}", ""]
  if table.command:
    command = f"`{table.command}`" if table.command.startswith("python") else table.command
    lines += [f"Command: {command}.", ""]
  lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
  for row in table.rows:
    by_seed = {e["seed"]: _lookup(e["results"], row.path) for e in loaded[row.setting]}
    values = [v for v in by_seed.values() if v is not None]
    mean, deviation = _mean_and_deviation(values) if values else (None, None)
    cells = [fmt(by_seed.get(s)) for s in seeds]
    if values:  # a mean over some of the setting's seeds says over how many
      partial = f" ({len(values)} of {len(by_seed)} seeds)" if len(values) < len(by_seed) else ""
      summary = [fmt(mean) + partial, fmt(deviation)]
    else:
      summary = ["not in its result files" if by_seed else "not run", ""]
    lines.append("| " + " | ".join([row.label, *cells, *summary, fmt(row.paper)]) + " |")
  if table.note:
    lines += ["", table.note]
  if table.figure:
    lines += ["", f"![{table.title}](figures/{table.figure}) (`python -m experiments.report figures`)"]
  return "\n".join(lines) + "\n"


def wall_times_markdown(results_dir: pathlib.Path = RESULTS_DIR) -> str:
  """Minutes of training behind every setting with result files (summed over its runs, mean over its seeds), and
  the machines they ran on."""
  lines = ["### Training time of each setting", "",
           "Minutes per seed, summed over the setting's runs and averaged over its seeds; other jobs may have shared "
           "the machine.", "",
           "| experiment | setting | seeds | training minutes | evaluation minutes | machine, devices | commits |",
           "|---|---|---|---|---|---|---|"]
  for directory in sorted({f.parent for f in pathlib.Path(results_dir).glob("**/seed_*.json")}):
    entries = [json.loads(f.read_text()) for f in sorted(directory.glob("seed_*.json"))]
    means = [sum(sum(e.get(field, {}).values()) for e in entries) / len(entries)
             for field in ("training_minutes", "evaluation_minutes")]
    machines = sorted({f"{s['machine']}, {s['devices']}" for e in entries for s in e["sessions"]})
    setting = directory.relative_to(results_dir)
    evaluated = any(e.get("evaluation_minutes") for e in entries)  # only some experiments time their evaluation
    commits = sorted({str(s["commit"])[:7] for e in entries for s in e["sessions"]})
    lines.append(f"| {setting.parts[0]} | {'/'.join(setting.parts[1:])} | {len(entries)} | {means[0]:.1f} | "
                 f"{f'{means[1]:.1f}' if evaluated else ''} | {'; '.join(machines)} | {', '.join(commits)} |")
  return "\n".join(lines) + "\n"


def headline_markdown(results_dir: pathlib.Path = RESULTS_DIR, headlines: Sequence[Headline] = HEADLINES) -> str:
  """The README's table: mean +- standard deviation over the seeds (their number), the Bayes floor of the same runs
  where there is one, and the paper's number."""
  lines = ["| result | ours: mean +- sd (seeds) | Bayes floor (results page) | paper |", "|---|---|---|---|"]
  for h in headlines:
    entries = load(results_dir, h.experiment, h.setting)
    cells = []
    for path in (h.path, h.floor_path):
      values = _values(entries, path) if path else []
      if not values:
        cells.append("not run" if path else "-")
        continue
      mean, deviation = _mean_and_deviation(values)
      text = f"{mean * h.scale:.{h.digits}f}"
      cells.append(f"{text} +- {deviation * h.scale:.{h.digits}f} ({len(values)})" if deviation is not None
                   else f"{text} (1)")
    lines.append(f"| {h.label} | {cells[0]} | {cells[1]} | {h.paper} |")
  return "\n".join(lines) + "\n"


def readme_with_headlines(readme: str, results_dir: pathlib.Path = RESULTS_DIR) -> str:
  """`readme` with the text between README_START and README_END replaced by `headline_markdown`."""
  start, end = readme.index(README_START) + len(README_START), readme.index(README_END)
  claims = ["", "The [findings](docs/findings.md), each with the comparisons over seeds that test it:", "",
            *(f"{i}. {finding.claim}." for i, finding in enumerate(FINDINGS, 1))]
  return readme[:start] + "\n" + headline_markdown(results_dir) + "\n".join(claims) + "\n" + readme[end:]


def performance_markdown(results_dir: pathlib.Path = RESULTS_DIR) -> str:
  """The performance page: a table of each benchmark record (`python -m experiments.benchmark --record FILE`)."""
  lines = ["<!-- Written by `python -m experiments.report tables` from results/benchmark/; do not edit by hand. -->",
           "", "# Performance", "",
           "`python -m experiments.benchmark` times the jitted training step of the MetaVAE and its three baselines at "
           "the MNIST setting (K = 5 distributions, B = 100 queries, sets of N = 10), beside a dense matmul measured "
           "in the same run, so that each step's share of the machine's matrix throughput is known. The original "
           "code's seconds per step are those of docs/design.md section 8 (other machines).", ""]
  records = sorted((pathlib.Path(results_dir) / "benchmark").glob("*.json"))
  if not records:
    lines.append("No benchmark is recorded yet: `python -m experiments.benchmark --record results/benchmark/NAME.json` "
                 "on an otherwise idle machine.")
  for path in records:
    record = json.loads(path.read_text())
    source = record["provenance"]
    lines += [f"## {path.stem}: {record['device']}, {source['machine']}", "",
              f"JAX {record['jax_version']}, {record['compute_dtype']} products, commit {str(source['commit'])[:7]}, "
              f"{source['started'][:10]}.", "",
              "| model | parameters | s / step | s / step back to back | GFLOP / step | GFLOP/s | matmul GFLOP/s | "
              "of matmul | original s / step |", "|---|---|---|---|---|---|---|---|---|"]
    for r in record["rows"]:
      lines.append(f"| {r['model']} | {r['parameters'] / 1e6:.2f} M | {r['sec_per_step']:.3f} | "
                   f"{r['sec_per_step_back_to_back']:.3f} | {r['model_gflop_per_step']:.2f} | "
                   f"{r['achieved_gflops']:.1f} | {r['matmul_gflops']:.1f} | {100 * r['fraction_of_matmul']:.0f} % | "
                   f"{r['original_sec_per_step'] if r['original_sec_per_step'] is not None else ''} |")
    lines.append("")
  return "\n".join(lines).rstrip("\n") + "\n"


@dataclasses.dataclass(frozen=True)
class Difference:
  """A comparison behind a finding: the mean of `path_a` over the seeds of `setting_a` minus that of `path_b` over
  `setting_b`, in standard errors of the difference (paired over seeds within one setting, Welch's between two)."""

  label: str
  experiment: str
  setting_a: str
  path_a: str
  setting_b: str
  path_b: str
  scale: float = 1.0
  digits: int = 3


@dataclasses.dataclass(frozen=True)
class Finding:
  """A claim of the findings page: what it rests on (`basis`), the tables that show it and the comparisons that test
  it, each computed from the result files when the page is written."""

  claim: str
  basis: str
  tables: tuple[Table, ...]
  differences: tuple[Difference, ...]


def _table(experiment: str, index: int = 0, keep=lambda row: True) -> Table:
  """The `index`-th table of `experiment` in TABLES, with the rows `keep` accepts."""
  found = [t for t in TABLES if t.experiment == experiment][index]
  return dataclasses.replace(found, rows=tuple(r for r in found.rows if keep(r)))


def _by_seed(entries: Sequence[dict[str, Any]], path: str) -> dict[int, float]:
  return {e["seed"]: v for e in entries if (v := _lookup(e["results"], path)) is not None}


def difference_row(d: Difference, results_dir: pathlib.Path) -> str:
  a = _by_seed(load(results_dir, d.experiment, d.setting_a), d.path_a)
  b = _by_seed(load(results_dir, d.experiment, d.setting_b), d.path_b)
  if not a or not b:
    return f"| {d.label} | {'' if a else 'not run'} | {'' if b else 'not run'} | | | |"
  (mean_a, sd_a), (mean_b, sd_b) = _mean_and_deviation(list(a.values())), _mean_and_deviation(list(b.values()))
  paired = d.setting_a == d.setting_b
  if paired:  # the same runs: the spread of the per-seed differences
    seeds = sorted(a.keys() & b.keys())
    _, sd = _mean_and_deviation([a[s] - b[s] for s in seeds])
    error = None if sd is None else sd / math.sqrt(len(seeds))
    counted = f"{len(seeds)}, paired"
  else:
    error = None if sd_a is None or sd_b is None else math.sqrt(sd_a ** 2 / len(a) + sd_b ** 2 / len(b))
    counted = f"{len(a)}, {len(b)}"
  gap = mean_a - mean_b
  if error is None:
    verdict = "one seed: no spread to weigh it against"
  elif error == 0:
    verdict = "no spread: the seeds agree exactly"
  else:
    verdict = f"{abs(gap) / error:.1f} standard errors"
  fmt = lambda v: f"{v * d.scale:.{d.digits}f}"  # noqa: E731
  return f"| {d.label} | {fmt(mean_a)} | {fmt(mean_b)} | {fmt(gap)} | {counted} | {verdict} |"


def findings_markdown(results_dir: pathlib.Path = RESULTS_DIR, findings: Sequence[Finding] | None = None) -> str:
  """The findings page: each claim, what it rests on, its comparisons (computed now) and its tables."""
  lines = ["<!-- Written by `python -m experiments.report tables` from the files under results/; do not edit by hand. "
           "-->", "", "# Findings", "",
           "What the reproduction found beyond the paper's numbers, each as a claim with the result files behind it. "
           "The comparisons are computed from those files when this page is written: the difference of the means "
           "and how many standard errors it spans (paired over the seeds where both sides come from the same runs). "
           "A claim rests on its comparisons; where they have one seed, it is a lead, not a finding. The commands "
           "are under each table.", ""]
  for i, finding in enumerate(FINDINGS if findings is None else findings, 1):
    lines += [f"## {i}. {finding.claim}", "", finding.basis, "",
              "| comparison | a | b | a - b | seeds | the gap |", "|---|---|---|---|---|---|",
              *(difference_row(d, results_dir) for d in finding.differences), ""]
    lines += [table_markdown(t, results_dir).replace("### ", "### Table: ", 1) for t in finding.tables]
  return "\n".join(lines).rstrip("\n") + "\n"


FINDINGS: tuple[Finding, ...] = (
    Finding(
        "In 2-D, how each decoder's two components are labelled decides the MetaVAE's clustering error",
        "The MetaELBO leaves it to each decoder which of its two means is component 0 (the paper's: where "
        "initialisation put it), and the encoder must label every mixture alike. In 2-D the two components have no "
        "continuous order, so a g(D, x) that is continuous in D must flip its labels somewhere and clusters whole "
        "mixtures wrongly near there. Scoring both orders of each decoder and keeping the better fits the order, "
        "but leaves the flip; anchoring it (component 0 is the one nearer the set's first point, which g reads) "
        "gives g a rule it can follow everywhere. The ablation: 2-D mixtures, N = 50 alone, three seeds each.",
        (_table("clustering_2d_N50"),),
        tuple(Difference(f"{labels} - anchored: {what}", "clustering_2d_N50", f"labels_{labels}", path,
                         "labels_anchored", path, scale=100, digits=2)
              for labels in ("fixed", "matched")
              for what, path in (("error (%)", "clustering_error.meta_vae_N50"),
                                 ("share of mixtures above 20 % error (%)",
                                  "mixtures_above_20pct_error.meta_vae_N50")))),
    Finding(
        "On the inclined planes, the MetaVAE's excess over the Bayes-optimal posterior mean lies beyond the training "
        "planes' span",
        "The paper's region (angles 20-70 degrees, lengths 2-20) reaches past the 25 training planes (at most 60 "
        "degrees and 10 units). Splitting the test grid there compares interpolation with extrapolation, each "
        "against the exact posterior mean of the friction on the same planes.",
        (_table("physics"),),
        tuple(Difference(f"MetaVAE - Bayes-optimal, {where} the span", "physics", "default",
                         f"region_{where}_training_span.meta_vae", "default",
                         f"region_{where}_training_span.bayes_optimal", digits=4)
              for where in ("within", "beyond"))),
    Finding(
        "Built as the paper describes, the VHE matches the MetaVAE on Table 2, and so does a VAE that ignores the set",
        "The paper's VHE and VHE + VampPrior trail its MetaVAE widely (the paper column). Ours share the MetaVAE's "
        "sizes, optimiser and budget (docs/design.md section 2), and the VAE control codes each image alone: where "
        "they match the MetaVAE, the linear probe of Table 2 does not show what the set adds. Why the paper's "
        "baselines are weaker is the subject of the departures table on the results page.",
        (_table("mnist_table2", keep=lambda r: r.setting.endswith(("_meta_vae", "_vhe", "_vae"))),),
        tuple(Difference(f"MetaVAE - {label}, {t}", "mnist_table2", f"{t}_meta_vae", "mean_test_accuracy",
                         f"{t}_{model}", "mean_test_accuracy")
              for model, label in (("vhe", "VHE"), ("vae", "VAE")) for t in ("rotate", "scale", "shear"))),
    Finding(
        "One MetaVAE amortized over three exponential families infers each family's parameter almost as well as a "
        "MetaVAE of that family alone, where one amortized over another family fails",
        "Figure 4 of the paper: a MetaVAE over 30 Gaussian, 30 log-normal and 30 exponential distributions against "
        "MetaVAEs over one family, on unseen distributions of each family.",
        (_table("expfam", 1),),
        tuple(Difference(f"{family}: three families - {family} alone", "expfam", "default",
                         f"many.{family}.meta_vae_90", "default", f"many.{family}.meta_vae_{family}")
              for family in ("gaussian", "lognormal", "exponential"))),
)


OPEN = """### What stays open

- Small NORB (Table 2's lower half): the dataset cannot be downloaded on the project's machine. Its pipeline, its conv
  models and their training are tested on small files the tests write in the dataset's format; no number is reported.
- Marino et al.'s converged test NLL takes about a thousand epochs, which the 2-core machine cannot run; the
  iterative-inference table above fills in from the default budget's result files as they are recorded.
"""


def tables_markdown(results_dir: pathlib.Path = RESULTS_DIR, tables: Sequence[Table] = TABLES) -> str:
  header = ("<!-- Written by `python -m experiments.report tables` from the files under results/; "
            "do not edit by hand. -->\n\n# Results\n\n"
            "Each table gives every seed's value, their mean and sample standard deviation, and the paper's number; "
            "the result files under results/ hold each run's config, commit and machine.\n\n"
            "![Clustering error against N with the Bayes floor, and Table 2 at 3000 steps](figures/results.png)\n\n"
            "(`python -m experiments.report figures` draws it from the same files.)\n\n")
  return header + "\n".join([*(table_markdown(t, results_dir) for t in tables), wall_times_markdown(results_dir),
                              OPEN])


def _summary(results_dir: pathlib.Path, experiment: str, setting: str, path: str) -> tuple[float, float] | None:
  values = _values(load(results_dir, experiment, setting), path)
  if not values:
    return None
  mean, deviation = _mean_and_deviation(values)
  return mean, deviation or 0.0


def figures(results_dir: pathlib.Path = RESULTS_DIR, out: pathlib.Path = RESULTS_DIR.parent / "docs" / "figures"
            ) -> list[pathlib.Path]:
  """docs/figures/results.png: the clustering error against N (mean and sd over seeds, the Bayes floor given the
  same set, the paper) in 1-D and 2-D, and Table 2 at 3000 steps (mean and sd over seeds, the paper's marks)."""
  from experiments.plotting import figure

  out.mkdir(parents=True, exist_ok=True)
  path = out / "results.png"
  sizes = (10, 20, 50)
  with figure(path, 1, 3, figsize=(12, 3.4)) as (_, axes):
    for ax, dimension in zip(axes[:2], ("1d", "2d"), strict=True):
      for label, key, style in (("MetaVAE (ours)", "clustering_error.meta_vae_N{}", "o-"),
                                ("Bayes classifier given D", "bayes_error.set_conditional.N{}", "k--")):
        points = [(n, _summary(results_dir, "clustering", dimension, key.format(n))) for n in sizes]
        points = [(n, s) for n, s in points if s is not None]
        if points:
          ax.errorbar([n for n, _ in points], [100 * s[0] for _, s in points], [100 * s[1] for _, s in points],
                      fmt=style, capsize=3, label=label)
      ax.plot(sizes, [100 * paper.CLUSTERING[f"meta_vae_N{n}"] for n in sizes], "s:", color="C1",
              label="MetaVAE (paper)")
      ax.set(title=f"Clustering, {dimension}", xlabel="N (set size)", ylabel="error on unseen mixtures (%)",
             xticks=sizes, ylim=(0, None))
      ax.legend(fontsize=7)
    ax = axes[2]
    transforms = ("rotate", "scale", "shear")
    for i, (model, label) in enumerate((("meta_vae", "MetaVAE"), ("vhe", "VHE"), ("vae", "VAE (set ignored)"))):
      for j, transform in enumerate(transforms):
        found = _summary(results_dir, "mnist_table2", f"{transform}_{model}", "mean_test_accuracy")
        if found is not None:
          ax.bar(j + 0.27 * (i - 1), found[0], 0.25, yerr=found[1], capsize=3, color=f"C{i}", label=label)
          label = None  # once per model
        reported = paper.TABLE2[transform].get(model)
        if reported is not None:
          ax.scatter(j + 0.27 * (i - 1), reported, marker="_", s=200, color="k",
                     label="paper" if (i, j) == (0, 0) else None)
    ax.set(title="Table 2, sparse split, 3000 steps", xticks=range(3), xticklabels=transforms,
           ylabel="linear-probe accuracy, unseen values", ylim=(0.4, 1.0))
    ax.legend(fontsize=7, loc="lower right")
  return [path, figure7(results_dir, out), *demonstration_figures(results_dir, out)]


def _mean_tree(trees: Sequence[Any]) -> Any:
  """The elementwise mean of same-shaped results (dicts, lists, numbers); anything else is taken from the first."""
  first = trees[0]
  if isinstance(first, dict):
    return {k: _mean_tree([t[k] for t in trees]) for k in first}
  if isinstance(first, list) and all(isinstance(t, list) and len(t) == len(first) for t in trees):
    return [_mean_tree([t[i] for t in trees]) for i in range(len(first))]
  if isinstance(first, (int, float)) and not isinstance(first, bool):
    return sum(trees) / len(trees)
  return first


def demonstration_figures(results_dir: pathlib.Path, out: pathlib.Path) -> list[pathlib.Path]:
  """The figures of the inclined planes (Figure 2: MSE over the test grid) and the exponential families (Figures 3
  and 4), drawn by the experiments' own plotting code from the mean over the seeds' result files."""
  import numpy as np

  from experiments import expfam, physics

  paths = []
  planes = [e["results"] for e in load(results_dir, "physics", "default")]
  if planes:
    mean = _mean_tree(planes)
    physics.plot(out, {k: np.asarray(v) for k, v in mean["mse_grid"].items()}, mean["lengths"], mean["angles"])
    paths.append(out / "physics_mse.png")
  families = [e["results"] for e in load(results_dir, "expfam", "default")]
  if families:
    expfam.plot(out, _mean_tree(families))
    paths += [out / "expfam_single.png", out / "expfam_many.png"]
  return paths


def figure7(results_dir: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
  """docs/figures/figure7.png: Figure 7 of Wu et al., the linear-probe accuracy on each unseen value of the sparse
  split at 3000 steps, mean and sd over the seeds of each model, the training values marked."""
  from experiments.plotting import figure

  path = out / "figure7.png"
  transforms = ("rotate", "scale", "shear")
  with figure(path, 1, 3, figsize=(12, 3.2)) as (_, axes):
    for ax, transform in zip(axes, transforms, strict=True):
      for i, (model, label) in enumerate(TABLE2_MODELS):
        entries = load(results_dir, "mnist_table2", f"{transform}_{model}")
        if not entries:
          continue
        values = entries[0]["results"]["unseen_values"]
        summaries = [_mean_and_deviation(_values(entries, f"test_accuracy.{j}")) for j in range(len(values))]
        ax.errorbar(values, [m for m, _ in summaries], [d or 0.0 for _, d in summaries], fmt="o-", ms=3,
                    capsize=2, color=f"C{i}", label=f"{label} ({len(entries)} seed{'s' if len(entries) > 1 else ''})")
        for value in entries[0]["results"]["training_values"]:
          ax.axvline(value, color="gray", alpha=0.25)
      ax.set(title=f"{transform}, sparse split, 3000 steps", xlabel=f"{transform} value (grey: training values)",
             ylabel="linear-probe accuracy")
      if ax.has_data():
        ax.legend(fontsize=7)
  return path


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__.split("\n\n")[0])
  commands = parser.add_subparsers(dest="command", required=True)
  rec = commands.add_parser("record", help="keep a finished run's results as results/EXPERIMENT/SETTING/seed_K.json")
  rec.add_argument("workdir", type=pathlib.Path)
  rec.add_argument("experiment")
  rec.add_argument("setting")
  rec.add_argument("--results_name", default="results.json")
  rec.add_argument("--results_dir", type=pathlib.Path, default=RESULTS_DIR)
  tab = commands.add_parser("tables", help="write the tables of every result file")
  tab.add_argument("--results_dir", type=pathlib.Path, default=RESULTS_DIR)
  tab.add_argument("--out", type=pathlib.Path, default=None, help="a markdown file (default: print)")
  tab.add_argument("--readme", type=pathlib.Path, default=RESULTS_DIR.parent / "README.md",
                   help="with --out, also rewrite this README's headline table")
  fig = commands.add_parser("figures", help="write docs/figures/results.png from the result files")
  fig.add_argument("--results_dir", type=pathlib.Path, default=RESULTS_DIR)
  fig.add_argument("--out", type=pathlib.Path, default=RESULTS_DIR.parent / "docs" / "figures")
  args = parser.parse_args(argv)
  try:
    if args.command == "figures":
      print("\n".join(str(p) for p in figures(args.results_dir, args.out)))
    elif args.command == "record":
      print(record(args.workdir, args.experiment, args.setting, results_dir=args.results_dir,
                   results_name=args.results_name))
    else:
      text = tables_markdown(args.results_dir)
      if args.out is None:
        print(text)
      else:
        atomic_write_text(args.out, text)
        atomic_write_text(args.out.parent / "performance.md", performance_markdown(args.results_dir))
        atomic_write_text(args.out.parent / "findings.md", findings_markdown(args.results_dir))
        if args.readme is not None:
          atomic_write_text(args.readme, readme_with_headlines(args.readme.read_text(), args.results_dir))
  except ReportError as error:
    sys.exit(f"error: {error}")


if __name__ == "__main__":
  main()
