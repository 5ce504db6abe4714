"""experiments.report: result files recorded from workdirs, and the tables made from them."""

import json
import math

import pytest

from experiments import report, rundir
from experiments.report_spec import FINDINGS, TABLES, Difference, Finding, Headline, Row, Table


def _workdir(path, seed, errors, *, hidden=128):
  """A finished clustering-like workdir: results.json, provenance.jsonl and wall_times.jsonl."""
  path.mkdir(parents=True)
  (path / "results.json").write_text(json.dumps({"clustering_error": errors, "set_sizes": [10]}))
  session = {"started": "2026-12-05T00:00:00+00:00", "commit": "abc", "uncommitted_changes": False,
             "machine": "test machine", "devices": "1 x cpu"}
  (path / rundir.PROVENANCE_NAME).write_text(json.dumps({**session, "config": {"seed": seed, "hidden": hidden,
                                                                               "data": {"manual_dir": str(path)}}})
                                             + "\n")
  (path / "wall_times.jsonl").write_text("".join(json.dumps({"run": r, "step": s, "seconds": 30.0}) + "\n"
                                                 for r in ("vae", "meta_vae_N10") for s in (100, 200))
                                         + "".join(json.dumps({"run": "vae", "step": 200, "data_seconds": 6.0,
                                                               "evaluation_seconds": e}) + "\n" for e in (60, 54)))
  return path


TABLE = Table("toy", "Toy error (%)", (Row("MetaVAE", "2d", "clustering_error.meta_vae_N10", 0.2),
                                       Row("VAE", "2d", "clustering_error.vae"),
                                       Row("Missing", "1d", "clustering_error.vae")), scale=100, digits=2)


def test_record_keeps_results_config_sessions_and_minutes(tmp_path):
  out = report.record(_workdir(tmp_path / "w", 3, {"vae": 0.25, "meta_vae_N10": 0.1}), "toy", "2d",
                      results_dir=tmp_path / "results")
  assert out == tmp_path / "results" / "toy" / "2d" / "seed_3.json"
  entry = json.loads(out.read_text())
  assert entry["results"]["clustering_error"]["vae"] == 0.25
  assert entry["config"]["hidden"] == 128 and entry["seed"] == 3
  assert entry["sessions"] == [{"started": "2026-12-05T00:00:00+00:00", "commit": "abc",
                                "uncommitted_changes": False, "machine": "test machine", "devices": "1 x cpu"}]
  assert entry["training_minutes"] == {"vae": 1.0, "meta_vae_N10": 1.0}
  assert entry["evaluation_minutes"] == {"vae": 1.0}  # the last evaluation, with its data preparation


def test_record_refuses_a_workdir_without_provenance_naming_it(tmp_path):
  workdir = _workdir(tmp_path / "w", 0, {"vae": 0.25})
  (workdir / rundir.PROVENANCE_NAME).unlink()
  with pytest.raises(report.ReportError, match="provenance.jsonl does not exist"):
    report.record(workdir, "toy", "2d", results_dir=tmp_path / "results")


def test_tables_give_each_seed_the_mean_the_sample_deviation_and_the_paper(tmp_path):
  for seed, error in ((0, 0.1), (1, 0.2), (2, 0.6)):
    report.record(_workdir(tmp_path / f"w{seed}", seed, {"vae": 0.3, "meta_vae_N10": error}), "toy", "2d",
                  results_dir=tmp_path / "results")
  lines = report.table_markdown(TABLE, tmp_path / "results").splitlines()
  assert lines[2] == ("Wall time per seed: 2.0 minutes of training and 1.0 minutes of evaluation on test machine "
                      "(each setting: the training-time table).")
  lines = lines[:2] + lines[4:]
  assert lines[2] == "|  | seed 0 | seed 1 | seed 2 | mean | sd | paper |"
  deviation = 100 * math.sqrt(((0.1 - 0.3) ** 2 + (0.2 - 0.3) ** 2 + (0.6 - 0.3) ** 2) / 2)
  assert lines[4] == f"| MetaVAE | 10.00 | 20.00 | 60.00 | 30.00 | {deviation:.2f} | 20.00 |"
  assert lines[5] == "| VAE | 30.00 | 30.00 | 30.00 | 30.00 | 0.00 |  |"
  assert lines[6] == "| Missing |  |  |  | not run |  |  |"
  times = report.wall_times_markdown(tmp_path / "results").splitlines()
  # Two runs of two 30-second windows, and the last evaluation of one of them: 54 + 6 seconds.
  assert times[6:] == ["| toy | 2d | 3 | 2.0 | 1.0 | test machine, 1 x cpu | abc |"]
  partial = Table("toy", "t", (Row("MetaVAE N10", "2d", "clustering_error.meta_vae_N10"),
                               Row("absent", "2d", "clustering_error.misspelt")))
  seed_3 = _workdir(tmp_path / "w3", 3, {"vae": 0.3})  # a seed from before the metric
  report.record(seed_3, "toy", "2d", results_dir=tmp_path / "results")
  rows = report.table_markdown(partial, tmp_path / "results").splitlines()
  assert rows[6].endswith("| 0.300 (3 of 4 seeds) | 0.265 |  |")
  assert rows[7].endswith("| not in its result files |  |  |")


def test_tables_refuse_seeds_that_ran_different_configs(tmp_path):
  report.record(_workdir(tmp_path / "a", 0, {"vae": 0.3}), "toy", "2d", results_dir=tmp_path / "results")
  report.record(_workdir(tmp_path / "b", 1, {"vae": 0.3}, hidden=64), "toy", "2d", results_dir=tmp_path / "results")
  with pytest.raises(report.ReportError, match="seed_1.json ran another config than .*seed_0.json: hidden differ"):
    report.table_markdown(TABLE, tmp_path / "results")


def test_the_committed_tables_are_the_ones_the_committed_result_files_make():
  docs = report.RESULTS_DIR.parent / "docs"
  fix = "run `python -m experiments.report tables --out docs/results.md`"
  assert (docs / "results.md").read_text() == report.tables_markdown(), fix
  assert (docs / "performance.md").read_text() == report.performance_markdown(), fix
  assert (docs / "findings.md").read_text() == report.findings_markdown(), fix


def test_the_configs_point_at_tables_the_report_writes():
  import re

  configs = sorted((report.RESULTS_DIR.parent / "experiments" / "configs").glob("*.py"))
  named = {m for path in configs for m in re.findall(r"\(results/(\w+)/\)", path.read_text())}
  assert named == {"clustering", "physics", "expfam", "mnist_table2", "iterative_mnist"}
  assert named <= {table.experiment for table in TABLES}


def test_the_headline_table_gives_mean_deviation_seeds_and_the_floor(tmp_path):
  for seed, (error, floor) in enumerate(((0.1, 0.05), (0.3, 0.05))):
    workdir = _workdir(tmp_path / f"w{seed}", seed, {"meta_vae_N10": error})
    results = json.loads((workdir / "results.json").read_text())
    (workdir / "results.json").write_text(json.dumps({**results, "floor": floor}))
    report.record(workdir, "toy", "2d", results_dir=tmp_path / "results")
  headlines = (Headline("toy error (%)", "toy", "2d", "clustering_error.meta_vae_N10", "floor", "9.9", 100, 1),
               Headline("not run yet", "toy", "1d", "clustering_error.vae", None, "-"))
  lines = report.headline_markdown(tmp_path / "results", headlines).splitlines()
  assert lines[2] == f"| toy error (%) | 20.0 +- {100 * math.sqrt(0.02):.1f} (2) | 5.0 +- 0.0 (2) | 9.9 |"
  assert lines[3] == "| not run yet | not run | - | - |"
  readme = f"intro\n{report.README_START}\nstale\n{report.README_END}\nrest\n"
  written = report.readme_with_headlines(readme, tmp_path / "results")
  assert written.startswith(f"intro\n{report.README_START}\n" + report.headline_markdown(tmp_path / "results"))
  # then the findings' claims, numbered
  status = report.STATUS[report.finding_status(FINDINGS[-1], tmp_path / "results")]
  assert written.endswith(f"\n{len(FINDINGS)}. {FINDINGS[-1].claim} ({status}).\n{report.README_END}\nrest\n")
  assert "stale" not in written


def test_the_figure_is_written_from_the_result_files(tmp_path):
  workdir = _workdir(tmp_path / "w", 0, {"meta_vae_N10": 0.1, "meta_vae_N50": 0.05})
  report.record(workdir, "clustering", "1d", results_dir=tmp_path / "results")
  for seed in (0, 1):  # Figure 7 from a Table 2 cell's per-value accuracies
    cell = _workdir(tmp_path / f"scale_{seed}", seed, {})
    (cell / "results.json").write_text(json.dumps({"unseen_values": [0.5, 0.7], "test_accuracy": [0.8, 0.9 + seed / 20],
                                                   "training_values": [0.6], "mean_test_accuracy": 0.85}))
    report.record(cell, "mnist_table2", "scale_meta_vae", results_dir=tmp_path / "results")
  paths = report.figures(tmp_path / "results", tmp_path / "figures")
  assert [p.name for p in paths] == ["results.png", "figure7.png"]  # no planes or families recorded here
  for path in paths:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size < 300_000


def test_the_committed_figures_are_small():
  figures = list((report.RESULTS_DIR.parent / "docs").glob("**/*.png"))
  assert figures and all(f.stat().st_size < 300_000 for f in figures)
  assert sum(f.stat().st_size for f in figures) < 5_000_000


def test_an_earlier_evaluation_is_recorded_with_its_own_config_sessions_and_minutes(tmp_path):
  workdir = _workdir(tmp_path / "w", 0, {"vae": 0.3})
  (workdir / "results_at_step_600.json").write_text(json.dumps({"train_steps": 600, "accuracy": 0.5}))
  sessions = [json.loads(line) for line in (workdir / rundir.PROVENANCE_NAME).read_text().splitlines()]
  lines = []
  for n, started in ((600, "t1"), (3000, "t2"), (3000, "t3")):  # t3 failed before its end
    lines.append({**sessions[0], "started": started, "config": {**sessions[0]["config"], "num_steps": n}})
    if started != "t3":
      lines.append({"finished": started})
  (workdir / rundir.PROVENANCE_NAME).write_text("".join(json.dumps(line) + "\n" for line in lines))
  with (workdir / "wall_times.jsonl").open("a") as f:  # the 3000-step session's window and evaluation
    f.write(json.dumps({"run": "vae", "step": 700, "seconds": 600.0}) + "\n")
    f.write(json.dumps({"run": "vae", "step": 3000, "data_seconds": 0.0, "evaluation_seconds": 600.0}) + "\n")
  early = json.loads(report.record(workdir, "toy", "cell/step_600", results_dir=tmp_path / "results",
                                   results_name="results_at_step_600.json").read_text())
  assert early["config"]["num_steps"] == 600 and [s["started"] for s in early["sessions"]] == ["t1"]
  assert early["training_minutes"]["vae"] == 1.0 and "vae" not in early["evaluation_minutes"]
  (workdir / "results.json").write_text(json.dumps({"train_steps": 3000, "accuracy": 0.6}))
  late = json.loads(report.record(workdir, "toy", "cell/step_3000", results_dir=tmp_path / "results").read_text())
  assert [s["started"] for s in late["sessions"]] == ["t1", "t2"]  # not t3, which never finished
  assert late["training_minutes"]["vae"] == 11.0 and late["evaluation_minutes"]["vae"] == 10.0


def test_a_run_that_collects_other_runs_is_recorded_under_their_seed(tmp_path):
  # mnist_tables' config holds its cells' config under `run`: its seed is run.seed, and the seeds of a setting
  # may differ there as at the top.
  for seed in (0, 1):
    workdir = _workdir(tmp_path / f"w{seed}", seed, {"vae": 0.3})
    session = json.loads((workdir / rundir.PROVENANCE_NAME).read_text())
    session["config"] = {"table1_images": 1000, "run": session["config"]}
    (workdir / rundir.PROVENANCE_NAME).write_text(json.dumps(session) + "\n")
    out = report.record(workdir, "toy", "2d", results_dir=tmp_path / "results")
    assert out.name == f"seed_{seed}.json" and json.loads(out.read_text())["seed"] == seed
  assert "| VAE | 30.00 | 30.00 |" in report.table_markdown(TABLE, tmp_path / "results")


def test_a_finding_weighs_each_difference_against_the_seeds_spread(tmp_path):
  results = tmp_path / "results"
  for seed, (meta_vae, vae) in enumerate(((0.10, 0.30), (0.20, 0.50), (0.30, 0.40))):
    report.record(_workdir(tmp_path / f"w{seed}", seed, {"vae": vae, "meta_vae_N10": meta_vae}), "toy", "2d",
                  results_dir=results)
  report.record(_workdir(tmp_path / "other", 0, {"vae": 0.5}), "toy", "1d", results_dir=results)
  paired = Difference("MetaVAE - VAE", "toy", "2d", "clustering_error.meta_vae_N10", "2d",
                      "clustering_error.vae", scale=100, digits=1)
  between = Difference("VAE 2d - VAE 1d", "toy", "2d", "clustering_error.vae", "1d", "clustering_error.vae")
  missing = Difference("absent", "toy", "3d", "clustering_error.vae", "2d", "clustering_error.vae")
  # Paired: the per-seed differences -0.2, -0.3, -0.1 have mean -0.2 and sd 0.1, so a standard error of 0.1 / sqrt(3).
  assert report.difference_row(paired, results) == (
      f"| MetaVAE - VAE | 20.0 | 40.0 | -20.0 | 3, paired | {0.2 / (0.1 / math.sqrt(3)):.1f} standard errors |")
  assert report.difference_row(between, results).endswith("| 3, 1 | one seed: no spread to weigh it against |")
  assert report.difference_row(missing, results) == "| absent | not run |  | | | |"
  finding = Finding("A claim", "Its basis.", (TABLE,), (paired,))
  page = report.findings_markdown(results, (finding,))
  assert "## 1. A claim\n\n*Status: tested over seeds.*\n\nIts basis.\n" in page
  assert "### Table: Toy error (%)" in page
  # A claim is a lead while a comparison rests on one seed, and pending while one lacks its runs.
  assert report.finding_status(Finding("c", "b", (), (paired, between)), results) == "lead"
  assert report.finding_status(Finding("c", "b", (), (paired, between, missing)), results) == "pending"


def test_the_demonstrations_figures_draw_the_elementwise_mean_of_the_seeds():
  seeds = [{"mse_grid": {"meta_vae": [[0.1, 0.2]]}, "lengths": [1.0], "region": "a"},
           {"mse_grid": {"meta_vae": [[0.3, 0.6]]}, "lengths": [1.0], "region": "b"}]
  assert report._mean_tree(seeds) == {"mse_grid": {"meta_vae": [[0.2, pytest.approx(0.4)]]}, "lengths": [1.0],
                                      "region": "a"}


def test_a_field_added_later_counts_at_the_value_that_runs_the_old_code(tmp_path):
  report.record(_workdir(tmp_path / "a", 0, {"vae": 0.3}), "toy", "2d", results_dir=tmp_path / "results")
  newer = _workdir(tmp_path / "b", 1, {"vae": 0.3})
  session = json.loads((newer / rundir.PROVENANCE_NAME).read_text())
  session["config"]["decoder_variance"] = "learned"
  (newer / rundir.PROVENANCE_NAME).write_text(json.dumps(session) + "\n")
  report.record(newer, "toy", "2d", results_dir=tmp_path / "results")
  assert len(report.load(tmp_path / "results", "toy", "2d")) == 2
  session["config"]["decoder_variance"] = "known"
  (newer / rundir.PROVENANCE_NAME).write_text(json.dumps(session) + "\n")
  report.record(newer, "toy", "2d", results_dir=tmp_path / "results")
  with pytest.raises(report.ReportError, match="decoder_variance differ"):
    report.load(tmp_path / "results", "toy", "2d")


def test_a_table_states_the_budget_its_result_files_ran(tmp_path):
  workdir = _workdir(tmp_path / "w", 0, {"vae": 0.3})
  session = json.loads((workdir / rundir.PROVENANCE_NAME).read_text())
  session["config"]["num_steps"] = 3000
  (workdir / rundir.PROVENANCE_NAME).write_text(json.dumps(session) + "\n")
  report.record(workdir, "toy", "2d", results_dir=tmp_path / "results")
  assert "Budget: 3,000 training steps per model (the result files' configs). Wall time per seed: 2.0 minutes" in \
      report.table_markdown(TABLE, tmp_path / "results")
