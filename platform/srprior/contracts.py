"""Names shared by the trainer, the sweep, the report and the UI: MLflow tags, experiments, metrics, benchmarks.

One place, so a renamed tag or metric cannot silently split runs into "found" and "not found".
"""

from __future__ import annotations

from typing import Any

# -------------------------------------------------------------------------------------------- benchmarks
BENCHMARK_DIRS = {"set5": "Set5", "set14": "Set14", "bsd100": "BSD100", "urban100": "Urban100",
                  "hardcases": "HardCases", "hardcases_r": "HardCases-R"}
"""Metric suffix -> folder under a benchmark root (EDSR layout). HardCases is not public (a user's own copy);
HardCases-R is the platform's rebuild (`srprior data hardcases`), reported under its own name."""
BENCHMARKS = tuple(BENCHMARK_DIRS)
OPTIONAL_BENCHMARKS = ("hardcases", "hardcases_r")  # evaluated when their folder exists under the data root
THESIS_BENCHMARKS = BENCHMARKS[:5]  # the thesis's table columns

# -------------------------------------------------------------------------------------------- metrics
BENCH_METRICS = tuple(f"{kind}_{bench}" for bench in THESIS_BENCHMARKS for kind in ("psnr", "ssim"))
CONTROL_SET, CONTROL_DIR = "hardcases_rc", "control"  # HardCases-R's control tiles: <HardCases-R>/control/
CONTROL_METRIC = f"psnr_{CONTROL_SET}"
REBUILT_METRICS = ("psnr_hardcases_r", "ssim_hardcases_r", CONTROL_METRIC, f"ssim_{CONTROL_SET}")
REGION_METRICS = ("psnr_total", "psnr_ssr", "psnr_poi")  # Table 4.7: PSNR on the image / SSRs / PoIs
EMBEDDED_METRICS = ("psnr_embedded", "ssim_embedded")  # sweeps without benchmark data (no thesis column)
DI = "di"  # the diffusion index (LAM), mean over the DI windows
FINAL_METRICS = (*BENCH_METRICS, DI, *REGION_METRICS, *EMBEDDED_METRICS, *REBUILT_METRICS)
"""Final metrics a trial logs; every table column is one of them."""
TRAIN_L1, TRAIN_L_AP, TRAIN_LOSS = "train/l1", "train/l_ap", "train/loss"  # per-step curves (Eq. 3.10, 3.9, sum)
CURVES = (TRAIN_L1, TRAIN_L_AP, TRAIN_LOSS, "val/psnr")
BICUBIC = "bicubic/"  # the same evaluation of MATLAB-bicubic upscaling: every report's reference row
SELECTED, LAST = "best/", "final/"  # final metrics of the best-validation weights (reported) and of the last step
BEST_STEP = "best_step"
OBJECTIVE = "val/psnr"  # what Tune/Optuna optimise (mean over seeds in a search)
STOP_SWEEP = "srprior/stop_sweep"  # in a Tune result: why the whole sweep must stop (a full disk; srprior.watchdog)
WAITING = "srprior/waiting_for"  # in a Tune result: the trial waits for the sweep holding its lease (srprior.locks)
MEMBERS_FAILED = "members_failed"  # in a Tune result: members of a fused group that failed (srprior.progress)
MEMBERS_REUSED = "members_reused"  # in a Tune result: members another sweep finished while this one waited
STEP = "step"  # in a Tune result and a trial's final metrics: the last training step
CHECKPOINT_BYTES = "srprior/checkpoint_bytes"  # in a Tune result: its checkpoint's size (srprior.watchdog)
# Timings of a trial (start-up, training steps, wall) live under system/, so MLflow shows them with the system
# metrics instead of before the training curves (benchmarks/ read them back).
TRAIN_STEPS_S = "system/train_steps_s"  # seconds inside training steps
TRIAL_WALL_S = "system/trial_wall_s"  # the trial's wall time, start-up included
TO_FIRST_STEP_S = "system/to_first_step_s"  # start-up: trial start to its first step
FIRST_STEP_UNIX, LAST_STEP_UNIX = "system/first_step_unix", "system/last_step_unix"
FUSED_MEMBERS = "system/fused_members"  # trials trained as one fused network in this run

# -------------------------------------------------------------------------------------------- tags
ROLE = "srprior.role"  # "trial" | "sweep"
SWEEP_ID = "srprior.sweep_id"  # the sweep that created the run
RUN_KEY = "srprior.run_key"  # content address: <config hash>-s<seed>
CONFIG_HASH = "srprior.config_hash"
RETRAIN = "srprior.retrain"  # set on runs trained again by --retrain (value: the sweep id)
RESUMED_AT = "srprior.resumed_at_step"
CHECKPOINT_FALLBACK = "srprior.checkpoint_fallback"  # which newer checkpoints were unreadable, which one resumed
REGION_SET = "srprior.region_set"
EVALUATED_LATER = "srprior.evaluated_later"  # benchmark sets a finished run gained from its checkpoint (backfill)
SEQUENTIAL = "srprior.sequential"  # on a look's parent run: the claims' decisions as JSON (--until-decided)
FAILURE = "srprior.failure"  # why a trial run ended FAILED ("step N: reason") or was marked KILLED
OWNER = "srprior.owner"  # the sweep that last opened the run (its lease tells whether it is alive)
TABLE, ROW, SEED = "table", "row", "seed"  # the first table row that trained the run (browsing only)
PARENT = "mlflow.parentRunId"
OPTIONS_TAG = "srprior.options"  # a sweep's options (JSON) on its parent run: --resume and --replan rebuild from them
CELLS_ARTIFACT = "plan/cells.json"  # a table sweep's planned cells [(row, seed, run key)] and readings, on its parent
IMAGES_ARTIFACT = "data/images.json"  # {"val": [name:sha], "test": {set: [name:sha]}}: disjoint by construction
NOTE = "mlflow.note.content"

# -------------------------------------------------------------------------------------------- files
CHECKPOINT_FILE = "state.pt"  # a Train checkpoint's state (srprior.trainers.checkpoints), in checkpoint_NNNNNN/
CHECKSUM_FILE = CHECKPOINT_FILE + ".sha256"  # beside it, sha256sum's format
SEQUENTIAL_JSON, SEQUENTIAL_MD = "sequential.json", "sequential.md"  # --until-decided's decisions, in reports/<name>/


SELECTOR_SEEDS = (1000, 1001)
"""Reserved seeds of the HardCases-R selector baselines (`--table selectors`): no thesis table runs a seed >=
SELECTOR_SEEDS[0], so the networks that choose HardCases-R's crops are never the ones its tables compare."""


def table_experiment(name: str) -> str:
    return f"srprior/table-{name}"


def search_experiment(name: str) -> str:
    return f"srprior/search-{name}"


EXPERIMENT_PREFIX = "srprior/"
ADHOC_EXPERIMENT = EXPERIMENT_PREFIX + "adhoc"  # a trial trained outside any table or search


# -------------------------------------------------------------------------------------------- queries
def tag_filter(tags: dict[str, str]) -> str:
    """An MLflow filter string matching all `tags` (values must not contain quotes)."""
    for key, value in tags.items():
        if "'" in str(value) or "`" in key:
            raise ValueError(f"run tag {key}={value!r}: quotes are not allowed in keys or values")
    return " AND ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())


def search_all(client: Any, experiment_ids: list[str], filter_string: str = "",
               order_by: tuple[str, ...] = ("attributes.start_time ASC",)) -> list[Any]:
    """Every run matching `filter_string` (MLflow returns at most 1000 per page: follow the page tokens)."""
    runs, token = [], None
    if not experiment_ids:
        return runs
    while True:
        page = client.search_runs(experiment_ids, filter_string, max_results=1000, page_token=token,
                                  order_by=list(order_by))
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def srprior_experiments(client: Any) -> list[Any]:
    """Every srprior experiment of a store (content-addressed runs may live in any of them)."""
    return [e for e in client.search_experiments(max_results=1000)
            if e.name.startswith(EXPERIMENT_PREFIX)]
