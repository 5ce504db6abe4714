"""Results as data: the result file of every run behind a reported number, and the tables made from them.

    python -m experiments.report record WORKDIR EXPERIMENT SETTING [--results_name results.json]
    python -m experiments.report tables [--out docs/results.md]   # and README.md's headline table
    python -m experiments.report figures                          # docs/figures/*.png

`record` keeps a finished run as results/<experiment>/<setting>/seed_<k>.json: its results.json (or another
results file of the workdir, such as an evaluation at an earlier step), the config, every session that trained or
evaluated it (git commit, uncommitted changes, machine, JAX devices: the workdir's provenance.jsonl) and the
minutes of training of each of its runs (wall_times.jsonl). `tables` reads every result file and writes the pages
that `report_spec` declares (docs/results.md, docs/findings.md, docs/performance.md and the README's headline
block): each seed's value, their mean and standard deviation, and the paper's number beside them. The seeds of one
setting must differ in nothing but the seed; a table cell is never typed by hand. `figures` draws docs/figures/ from
the same files.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

from experiments import paper
from experiments.report_spec import (
  FINDINGS,
  HEADLINES,
  OPEN,
  TABLE2_MODELS,
  TABLES,
  Difference,
  Finding,
  Headline,
  Table,
)
from experiments.rundir import PROVENANCE_NAME, atomic_write_text, logged_seconds, read_jsonl

RESULTS_DIR = pathlib.Path(__file__).resolve().parent.parent / "results"
# Config fields that may differ between the seeds of one setting (where they run, not what they compute), at the top
# of the config or under a field (mnist_tables' `run`).
FREE_FIELDS = ("seed", "data.data_dir", "data.manual_dir", "checkpoint_every_seconds", "log_every")


# Config fields added after some result files were made, each with the value that runs the code as it was before
# the field: a config without the field ran with that value.
ADDED_FIELDS = {"decoder_variance": "learned", "decoder_init": "prior", "likelihood_clamp": "none", "init": "flax"}


def _setting(config: dict[str, Any], field: str) -> Any:
  return config.get(field, ADDED_FIELDS.get(field.rsplit(".", 1)[-1], "<absent>"))


def _free(field: str) -> bool:
  return any(field == free or field.endswith(f".{free}") for free in FREE_FIELDS)


def _seed(config: dict[str, Any]) -> int:
  """The seed of a run's config: its own, or that of the runs it collects (mnist_tables' `run.seed`)."""
  return config["seed"] if "seed" in config else config["run"]["seed"]


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


def _mean_minutes(entries: Sequence[dict[str, Any]], field: str) -> float:
  """The minutes of `field` ("training_minutes" or "evaluation_minutes") per seed, summed over runs."""
  return sum(sum(e.get(field, {}).values()) for e in entries) / len(entries)


def _wall_time_line(loaded: dict[str, list[dict[str, Any]]]) -> str:
  """"Wall time per seed: ..." over the settings of a table with result files: the range over its settings of the
  mean minutes per seed, of training and of evaluation where it was timed, and the machines."""
  entries = [e for setting in loaded.values() for e in setting]
  if not entries:
    return ""
  spans = []
  for field, what in (("training_minutes", "training"), ("evaluation_minutes", "evaluation")):
    means = [_mean_minutes(setting, field) for setting in loaded.values()
             if setting and any(e.get(field) for e in setting)]
    if means:
      low, high = min(means), max(means)
      spans.append(f"{low:.1f} minutes of {what}" if f"{low:.1f}" == f"{high:.1f}" else
                   f"{low:.1f}-{high:.1f} minutes of {what}")
  if not spans:  # nothing timed (a run that only collects other runs' checkpoints)
    return ""
  machines = sorted({s["machine"] for e in entries for s in e["sessions"]})
  steps = sorted({e["config"].get("num_steps", e["config"].get("run", {}).get("num_steps")) for e in entries} - {None})
  budget = f"Budget: {' or '.join(f'{n:,}' for n in steps)} training steps per model (the result files' configs). "
  return (f"{budget if steps else ''}Wall time per seed: {' and '.join(spans)} on {'; '.join(machines)} (each "
          "setting: the training-time table).")


def table_markdown(table: Table, results_dir: pathlib.Path) -> str:
  """The markdown of one table: a row per Row, a column per seed found, then mean, standard deviation, paper."""
  loaded = {row.setting: load(results_dir, table.experiment, row.setting) for row in table.rows}
  seeds = sorted({e["seed"] for entries in loaded.values() for e in entries})
  fmt = lambda v: "" if v is None else f"{v * table.scale:.{table.digits}f}"  # noqa: E731
  header = ["", *(f"seed {s}" for s in seeds), "mean", "sd", "paper"]
  lines = [f"### {table.title}", ""]
  if table.command:
    lines += [f"Command: `{table.command}`" + (f", where {table.where}." if table.where else "."), ""]
  wall_time = _wall_time_line(loaded)
  if wall_time:
    lines += [wall_time, ""]
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
    means = [_mean_minutes(entries, field) for field in ("training_minutes", "evaluation_minutes")]
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
            *(f"{i}. {finding.claim} ({STATUS[finding_status(finding, results_dir)]})."
              for i, finding in enumerate(FINDINGS, 1))]
  return readme[:start] + "\n" + headline_markdown(results_dir) + "\n".join(claims) + "\n" + readme[end:]


def performance_markdown(results_dir: pathlib.Path = RESULTS_DIR) -> str:
  """The performance page: a table of each benchmark record (`python -m experiments.benchmark --record FILE`)."""
  lines = ["<!-- Written by `python -m experiments.report tables` from results/benchmark/; do not edit by hand. -->",
           "", "# Performance", "",
           "`python -m experiments.benchmark` times the jitted training step of the MetaVAE and its three baselines at "
           "the MNIST setting (K = 5 distributions, B = 100 queries, sets of N = 10), beside a dense matmul measured "
           "in the same run, so that each step's share of the machine's matrix throughput is known. The original "
           "code's seconds per step are those of the [design notes](design.md), section 8: its own training step on a "
           "2-core CPU machine, not timed in the same run, so the ratio to ours is approximate.", ""]
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


def finding_status(finding: Finding, results_dir: pathlib.Path = RESULTS_DIR) -> str:
  """"pending" while a comparison of `finding` lacks a side's result files, "lead" while one has a single seed,
  else "tested"."""
  counts = [len(_by_seed(load(results_dir, d.experiment, setting), path))
            for d in finding.differences for setting, path in ((d.setting_a, d.path_a), (d.setting_b, d.path_b))]
  return "pending" if min(counts) == 0 else "lead" if min(counts) == 1 else "tested"


STATUS = {"pending": "pending: some of its runs are not recorded yet",
          "lead": "a lead: a comparison rests on one seed",
          "tested": "tested over seeds"}


def findings_markdown(results_dir: pathlib.Path = RESULTS_DIR, findings: Sequence[Finding] | None = None) -> str:
  """The findings page: each claim, what it rests on, its comparisons (computed now) and its tables."""
  lines = ["<!-- Written by `python -m experiments.report tables` from the files under results/; do not edit by hand. "
           "-->", "", "# Findings", "",
           "What the reproduction found beyond the paper's numbers, each as a claim with the result files behind it. "
           "The comparisons are computed from those files when this page is written: the difference of the means "
           "and how many standard errors it spans (paired over the seeds where both sides come from the same runs). "
           "A claim rests on its comparisons; its status says whether they are tested over seeds, rest on one seed "
           "(a lead, not a finding) or wait for runs. Each table gives the command behind it.", ""]
  for i, finding in enumerate(FINDINGS if findings is None else findings, 1):
    lines += [f"## {i}. {finding.claim}", "", f"*Status: {STATUS[finding_status(finding, results_dir)]}.*", "",
              finding.basis, "",
              "| comparison | a | b | a - b | seeds | the gap |", "|---|---|---|---|---|---|",
              *(difference_row(d, results_dir) for d in finding.differences), ""]
    lines += [table_markdown(t, results_dir).replace("### ", "### Table: ", 1) for t in finding.tables]
  return "\n".join(lines).rstrip("\n") + "\n"


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
