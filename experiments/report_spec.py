"""What the report shows: the tables of the results page, the README's headline rows and the findings, each a
declaration of which result files' values go where (`experiments.report` reads the files and writes the pages).

A Table's rows name an experiment's setting (results/<experiment>/<setting>/) and a path into its results; a Finding
is a claim with the tables that show it and the Differences that test it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from experiments import paper


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
  where: str = ""  # what the command's placeholders stand for
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


SEPARATION_BINS = ("under 1", "1-1.5", "1.5-2.5", "over 2.5")  # experiments.clustering.SEPARATION_EDGES' bins
TABLE1_TRANSFORMS = ("rotate", "scale", "shear")
TABLE2_MODELS = (("meta_vae", "MetaVAE"), ("vhe", "VHE"), ("vae", "VAE (set ignored)"), ("ns", "NS"),
                 ("vhe_vampprior", "VHE + VampPrior"))

BASELINE_VARIANTS = (("vhe", "sparse", "none", "VHE"), ("vhe", "sparse", "clamp", "VHE + clamp"),
                     ("vhe", "sparse", "init", "VHE + init"), ("vhe", "sparse", "clamp_init", "VHE + clamp + init"),
                     ("vhe_vampprior", "contiguous", "clamp_init", "VHE + VampPrior + clamp + init"),
                     ("meta_vae", "sparse", "clamp", "MetaVAE + clamp"))

# The 2-D clustering seeds of each anchor (decoder_labels anchored, and anchored_farthest, the default), and how the
# first-point rows are run.
ANCHOR_SETTINGS = (("first-point", "2d_anchor_first"), ("farthest-point", "2d"))
FIRST_POINT_ROWS = "the first-point anchor's rows add --config.decoder_labels=anchored"

ITERATIVE_MNIST_COMMAND = ("python -m experiments.iterative_mnist --config.data.manual_dir=../shared/data/mnist "
                           "--config.seed=K --workdir DIR")

TABLES: tuple[Table, ...] = (
    Table("clustering", "Clustering error on 1000 unseen mixtures (%)",
          (*_clustering_rows("1d"), *_clustering_rows("2d"),
           *(Row(f"{d}, first-point anchor: MetaVAE, N = {n}", f"{d}_anchor_first", f"clustering_error.meta_vae_N{n}",
                 paper.CLUSTERING[f"meta_vae_N{n}"]) for d in ("1d", "2d") for n in (10, 20, 50))),
          scale=100, digits=2,
          note="The paper's numbers (dimension not stated) stand beside both settings. The share of mixtures above "
               "20 % error counts failures in 2-D; in 1-D many mixtures overlap, and even the Bayes classifiers pass "
               "20 % on some, so there it counts overlap as much as failure.",
          command="python -m experiments.clustering --config.data_dim=D --config.seed=K --workdir DIR",
          where=f"D is 1 or 2, K the seed, DIR a fresh directory; the default budget; {FIRST_POINT_ROWS}"),
    Table("clustering", "Clustering, 2-D, N = 50: the error on unseen mixtures by the distance between their two "
          "means (%)",
          tuple(Row(f"means {bin_label} apart: {label}", setting, f"error_by_separation.{key}.{b}")
                for b, bin_label in enumerate(SEPARATION_BINS)
                for label, setting, key in (("MetaVAE, farthest-point anchor (default)", "2d", "meta_vae_N50"),
                                            ("MetaVAE, first-point anchor", "2d_anchor_first", "meta_vae_N50"),
                                            ("Bayes classifier given D", "2d", "bayes_N50"))),
          scale=100, digits=2,
          command="python -m experiments.clustering --config.data_dim=2 --config.seed=K --workdir DIR",
          where=FIRST_POINT_ROWS),
    Table("clustering", "Clustering, 2-D, N = 50: how the decoders fit their training mixtures, by the distance "
          "between the mixture's means",
          tuple(Row(f"means {bin_label} apart: {label}", setting, f"training_decoders_by_separation.{key}.{b}")
                for b, bin_label in enumerate(SEPARATION_BINS)
                for label, setting, key in (
                    ("training mixtures (of 500)", "2d", "mixtures"), ("true separation", "2d", "true_separation"),
                    ("the decoder's separation, farthest-point anchor", "2d", "learned_separation"),
                    ("the decoder's separation, first-point anchor", "2d_anchor_first", "learned_separation"),
                    ("the decoder's variance (true: 0.1), farthest-point anchor", "2d", "learned_variance"),
                    ("the decoder's variance (true: 0.1), first-point anchor", "2d_anchor_first",
                     "learned_variance"))),
          digits=2, command="python -m experiments.clustering --config.data_dim=2 --config.seed=K --workdir DIR",
          where=FIRST_POINT_ROWS),
    Table("clustering_2d_N50", "Clustering, 2-D, N = 50: how a decoder's component labels are set (error on unseen "
          "mixtures, %)",
          _n50_rows((("labels_fixed", "fixed by initialisation (the paper)"),
                     ("labels_matched", "both orders scored, the better kept"),
                     ("labels_anchored", "the component of the set's first point is 0"),
                     ("labels_anchored_farthest", "the component of the set's point farthest from its mean is 0 "
                                                  "(default)"))),
          scale=100, digits=2,
          note="The farthest-point rows skip the VAE (--config.vae_num_steps=1), which does not touch the MetaVAE.",
          command="python -m experiments.clustering --config.data_dim=2 --config.set_sizes='(50,)' "
                  "--config.train_mixture_counts='()' --config.decoder_labels=L --config.seed=K --workdir DIR",
          where="L is fixed, matched, anchored or anchored_farthest"),
    Table("clustering_2d_N50", "Clustering, 2-D, N = 50: what limits the MetaVAE (error on unseen mixtures, %)",
          _n50_rows((("labels_anchored", "the first-point anchor"),
                     ("steps_12000", "12,000 steps instead of 3000"),
                     ("hidden_256", "width 256 instead of 128"),
                     ("mixtures_2000", "2000 training mixtures instead of 500"),
                     ("mixtures_2000_steps_12000", "2000 training mixtures and 12,000 steps"),
                     ("variance_known", "each decoder's variance the known component variance"),
                     ("init_data", "each decoder's means started at two points of its mixture"),
                     ("variance_known_init_data", "the variance known, the means started at points of the mixture"),
                     ("labels_anchored_farthest", "the farthest-point anchor instead (the default)"))),
          scale=100, digits=2,
          note="Each row changes the run with the first-point anchor (decoder_labels=anchored) as it names. The runs "
               "of 12,000 steps, width 256, 2000 mixtures and the farthest-point anchor also skip the VAE "
               "(--config.vae_num_steps=1), which does not touch the MetaVAE.",
          command="python -m experiments.clustering --config.data_dim=2 --config.set_sizes='(50,)' "
                  "--config.train_mixture_counts='()' --config.decoder_labels=anchored --config.seed=K --workdir DIR",
          where="each row but the first adds its change: --config.num_steps=12000, --config.hidden=256, "
                "--config.num_train_mixtures=2000, --config.decoder_variance=known, --config.decoder_init=data or "
                "--config.decoder_labels=anchored_farthest"),
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
          command="python -m experiments.physics --config.seed=K --workdir DIR", where="the default budget"),
    Table("physics", "Inclined planes, the control: the same MetaVAE trained on 25 planes spanning the paper's region "
          "(MSE of the inferred friction over the region)",
          (Row("MetaVAE trained across the region", "region_span", "meta_vae_mse_in_region", paper.PLANES_MSE_BOUND),
           Row("Bayes-optimal posterior mean", "region_span", "bayes_optimal_mse_in_region")), digits=4,
          note="The training planes' lengths are 2, 6.5, 11, 15.5 and 20 and their angles 20, 32.5, 45, 57.5 and 70, "
               "instead of 2-10 and 20-60: the whole region lies within their span.",
          command="python -m experiments.physics --config.train_lengths='(2.0,6.5,11.0,15.5,20.0)' "
                  "--config.train_angles='(20.0,32.5,45.0,57.5,70.0)' --config.seed=K --workdir DIR"),
    Table("expfam", "Exponential families: MSE of the inferred parameter on unseen distributions",
          tuple(Row(f"{family}: {model}", "default", f"single.{family}.{key}")
                for family in ("gaussian", "lognormal", "exponential")
                for model, key in (("MetaVAE", "meta_vae"), ("VAE", "vae"))),
          note="The figure: the MSE against the true parameter, the mean over the seeds; grey, the training range "
               "(Figure 3 of the paper).", figure="expfam_single.png",
          command="python -m experiments.expfam --config.seed=K --workdir DIR", where="the default budget"),
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
          command="python -m experiments.mnist_rotate --config.data.manual_dir=../shared/data/mnist "
                  "--config.model=M --config.split=sparse --config.num_steps=3000 --config.seed=K --workdir DIR",
          where="mnist_scale and mnist_shear for the other rows, M the model (meta_vae, vhe, vae, ns, vhe_vampprior)",
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
          command=ITERATIVE_MNIST_COMMAND),
    Table("iterative_mnist", "Iterative amortized inference (Marino et al.): test ELBO by inference step on "
          "binarised MNIST, nats (1000 test images)",
          (Row("standard amortized inference (one step)", "default", "elbo_by_step.standard.0"),
           *(Row(f"{label}, after {k} step{'s' if k > 1 else ''}", "default", f"elbo_by_step.{model}.{k}")
             for model, label in (("iterative_gradient", "iterative, ELBO gradients encoded"),
                                  ("iterative_gradient_standardized", "iterative, gradients standardised"),
                                  ("iterative_error", "iterative, errors encoded"))
             for k in (1, 2, 5, 10, 50))), digits=2,
          note="The iterative models are trained with T = 5 refinement steps; the rows past 5 show whether the "
               "refinement keeps improving the ELBO or drifts beyond the steps it was trained for. The same "
               "result files hold the test ELBO of SGD and Adam run on the posterior directly "
               "(`optimizer_baseline`), from the prior's initialisation, with the iterative model's decoder.",
          command=ITERATIVE_MNIST_COMMAND),
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
               "kernels and zero biases; both as the original code ([design notes](design.md), section 2).",
          command="python -m experiments.mnist_scale --config.data.manual_dir=../shared/data/mnist --config.model=vhe "
                  "--config.split=sparse --config.likelihood_clamp=1e-7 --config.init=xavier_sqrt2 "
                  "--config.num_steps=600 --workdir DIR",
          where="each row sets the model, split and switches it names, and the same command with "
                "--config.num_steps=3000 then carries DIR on (results_at_step_600.json, results_at_step_3000.json)"),
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


FINDINGS: tuple[Finding, ...] = (
    Finding(
        "In 2-D, how each decoder's two components are labelled decides the MetaVAE's clustering error",
        "The MetaELBO leaves it to each decoder which of its two means is component 0 (the paper's: where "
        "initialisation put it), and the encoder must label every mixture alike. In 2-D the two components have no "
        "continuous order, so a g(D, x) that is continuous in D must flip its labels somewhere and clusters whole "
        "mixtures wrongly near there. Scoring both orders of each decoder and keeping the better fits the order, "
        "but leaves the flip; anchoring it (component 0 is the one nearer a point of the set, which g reads) gives "
        "g a rule it can follow everywhere, and the anchor works best where it lies clear of the boundary between "
        "the components: the set's point farthest from its mean rather than its first point. The ablation: 2-D "
        "mixtures, N = 50 alone, three seeds each.",
        (_table("clustering_2d_N50"),),
        tuple(Difference(f"{name} - farthest-point anchor: {what}", "clustering_2d_N50",
                         f"labels_{labels}", path, "labels_anchored_farthest", path, scale=100, digits=2)
              for labels, name in (("fixed", "fixed"), ("matched", "matched"), ("anchored", "first-point anchor"))
              for what, path in (("error (%)", "clustering_error.meta_vae_N50"),
                                 ("share of mixtures above 20 % error (%)",
                                  "mixtures_above_20pct_error.meta_vae_N50")))),
    Finding(
        "Anchored on the set's first point, the 2-D MetaVAE's excess error lies on overlapping mixtures, whose "
        "training decoders draw their means together and widen their variance; anchored on the farthest point, "
        "most of that excess goes",
        "Split by the distance between the two means, the error of the first-point anchor over the Bayes classifier "
        "given the same set sits on the few mixtures whose means are close, and on training mixtures of that kind "
        "the decoders shrink the distance between their means and inflate their variance. There the first point "
        "lies near the boundary between the components about as often as any point of the set and names component "
        "0 by chance, so a decoder is taught labels that swap from step to step. The point farthest from the set's "
        "mean lies far out along the line between the means. Other changes, tried with the first-point anchor, did "
        "not close the gap (the table of what limits it): four times the training mixtures, with or without four "
        "times the steps, helped less than the farthest-point anchor; the known variance stalled at chance from "
        "the prior's means, and a wider encoder stalled too.",
        (_table("clustering", 1), _table("clustering", 2), _table("clustering_2d_N50", 1)),
        (*(Difference(f"first-point - farthest-point anchor: MetaVAE, {d}, N = 50 (%)", "clustering",
                      f"{d}_anchor_first", "clustering_error.meta_vae_N50", d, "clustering_error.meta_vae_N50",
                      scale=100, digits=2) for d in ("2d", "1d")),
         *(Difference(f"first-point - farthest-point anchor, means {SEPARATION_BINS[b]} apart (%)", "clustering",
                      "2d_anchor_first", f"error_by_separation.meta_vae_N50.{b}", "2d",
                      f"error_by_separation.meta_vae_N50.{b}", scale=100, digits=2) for b in range(4)),
         *(Difference(f"MetaVAE - Bayes given D, {anchor} anchor, means under 1 apart (%)", "clustering", setting,
                      "error_by_separation.meta_vae_N50.0", setting, "error_by_separation.bayes_N50.0", scale=100,
                      digits=2) for anchor, setting in ANCHOR_SETTINGS),
         *(Difference(f"decoder's - true separation, {anchor} anchor, training means under 1 apart", "clustering",
                      setting, "training_decoders_by_separation.learned_separation.0", setting,
                      "training_decoders_by_separation.true_separation.0", digits=2)
           for anchor, setting in ANCHOR_SETTINGS),
         *(Difference(f"decoder's variance, {anchor} anchor, means under 1 apart - over 2.5 apart", "clustering",
                      setting, "training_decoders_by_separation.learned_variance.0", setting,
                      "training_decoders_by_separation.learned_variance.3", digits=3)
           for anchor, setting in ANCHOR_SETTINGS),
         *(Difference(f"{label}, first-point anchor - farthest-point anchor: MetaVAE, N = 50 (%)",
                      "clustering_2d_N50", setting, "clustering_error.meta_vae_N50", "labels_anchored_farthest",
                      "clustering_error.meta_vae_N50", scale=100, digits=2)
           for setting, label in (("mixtures_2000", "2000 mixtures"),
                                  ("mixtures_2000_steps_12000", "2000 mixtures, 12,000 steps"))))),
    Finding(
        "On the inclined planes, the MetaVAE's excess over the Bayes-optimal posterior mean lies mostly beyond the "
        "training planes' span",
        "The paper's region (angles 20-70 degrees, lengths 2-20) reaches past the 25 training planes (at most 60 "
        "degrees and 10 units). Splitting the test grid there compares interpolation with extrapolation, each "
        "against the exact posterior mean of the friction on the same planes; the control trains the same MetaVAE "
        "on 25 planes that span the whole region.",
        (_table("physics"), _table("physics", 1)),
        (*(Difference(f"MetaVAE - Bayes-optimal, {where} the span", "physics", "default",
                      f"region_{where}_training_span.meta_vae", "default",
                      f"region_{where}_training_span.bayes_optimal", digits=4)
           for where in ("within", "beyond")),
         Difference("MetaVAE trained across the region - Bayes-optimal, over the region", "physics", "region_span",
                    "meta_vae_mse_in_region", "region_span", "bayes_optimal_mse_in_region", digits=4))),
    Finding(
        "Built as the paper describes, the VHE matches the MetaVAE on Table 2 to a few tenths of a point either way, "
        "and a VAE that ignores the set does as well or slightly better",
        "The paper's VHE and VHE + VampPrior trail its MetaVAE widely (the paper column). Ours share the MetaVAE's "
        "sizes, optimiser and budget ([design notes](design.md), section 2), and the VAE control codes each image "
        "alone: where they match the MetaVAE, the linear probe of Table 2 does not show what the set adds. The seeds "
        "agree closely enough to resolve gaps of a few tenths of a point, and the gaps below are of that size, a "
        "tenth of the paper's or less. Why the paper's baselines are weaker is the subject of the next finding.",
        (_table("mnist_table2", keep=lambda r: r.setting.endswith(("_meta_vae", "_vhe", "_vae"))),),
        tuple(Difference(f"MetaVAE - {label}, {t}", "mnist_table2", f"{t}_meta_vae", "mean_test_accuracy",
                         f"{t}_{model}", "mean_test_accuracy")
              for model, label in (("vhe", "VHE"), ("vae", "VAE")) for t in ("rotate", "scale", "shear"))),
    Finding(
        "The original code's initialisation of its baselines, not its likelihood clamp, makes them weak: the paper's "
        "VHE accuracies lie between those of a VHE so initialised at the early epoch its checkpoint selection keeps "
        "and at the end of training",
        "The original code initialises the NS and the VHEs (not its MetaVAE) with xavier_normal kernels of gain "
        "sqrt 2, clamps every model's Bernoulli probabilities, and keeps its baselines' checkpoint by a test marginal "
        "of the wrong sign, i.e. an early one. The initialisation and the clamp are each switched on alone in our VHE; "
        "evaluating at 600 steps (one epoch of the original) as well as at 3000 stands in for the checkpoint "
        "selection. The clamp alone leaves the accuracy where it was. With both, the "
        "VHE + VampPrior on the contiguous split (the original's configs) stays above the VHE on rotation, as in the "
        "paper, and falls below it on scale, where the paper has it above: the departures explain the VHE's "
        "column, not the VampPrior's. The MetaVAE, which the original initialises as PyTorch does, stays far above "
        "the VHE with both departures.",
        (_table("mnist_baselines"),),
        (*(Difference(f"{t}, {steps} steps: VHE + {variant} - VHE", "mnist_baselines",
                      f"{t}_sparse_vhe_{variant}/step_{steps}", "mean_test_accuracy",
                      f"{t}_sparse_vhe_none/step_{steps}", "mean_test_accuracy")
           for t in ("rotate", "scale") for variant in ("init", "clamp") for steps in (600, 3000)),
         *(Difference(f"{t}, {steps} steps, clamp + init: VHE + VampPrior (contiguous) - VHE (sparse)",
                      "mnist_baselines", f"{t}_contiguous_vhe_vampprior_clamp_init/step_{steps}", "mean_test_accuracy",
                      f"{t}_sparse_vhe_clamp_init/step_{steps}", "mean_test_accuracy")
           for t in ("rotate", "scale") for steps in (600, 3000)),
         *(Difference(f"scale, {steps} steps: MetaVAE + clamp - VHE + clamp + init", "mnist_baselines",
                      f"scale_sparse_meta_vae_clamp/step_{steps}", "mean_test_accuracy",
                      f"scale_sparse_vhe_clamp_init/step_{steps}", "mean_test_accuracy") for steps in (600, 3000)))),
    Finding(
        "The MetaVAE's codes are far from invariant to the transformation it was amortized over: its set undoes only a "
        "small part of it",
        "Table 1 of the paper: the distance between the code of an image and the codes of its transformed versions, "
        "small on the diagonal (the transformation the MetaVAE was amortized over) and large off it. Two references "
        "read ours: the same distance with every set drawn from the untransformed images (what the set undoes is the "
        "difference), and the distance between the codes of different images (a code that ignored the image "
        "entirely would be this far).",
        (_table("mnist_table1"),),
        tuple(Difference(f"amortized over {t}, {t} applied: {label}", "mnist_table1", "sparse_meta_vae",
                         f"table1.{t}.own_sets.{j}", "sparse_meta_vae", path, digits=2)
              for j, t in enumerate(TABLE1_TRANSFORMS)
              for label, path in (("own sets - untransformed sets", f"table1.{t}.base_sets.{j}"),
                                  ("own sets - different images", f"table1.{t}.different_images")))),
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
- Marino et al.'s converged test NLL takes about a thousand epochs, which the 2-core machine cannot run. The two
  iterative-inference tables above give what the default budget measured instead: 20,000 steps (about 21 epochs)
  per model, one seed, so they compare the models at equal cost, not at convergence.
"""
