"""The Tune trainable: a small driver that turns a Tune config into a trial config and runs a TorchTrainer.

Ray 2.60 Train V2 no longer accepts `Tuner(TorchTrainer)`: each Tune trial is this function, which launches the
TorchTrainer and returns; TuneReportCallback forwards rank 0's reports to Tune. The Train run is named after the
Tune trial id, so a restarted trial (driver killed, `--resume`) finds its Train run and resumes from its last
checkpoint; FailureConfig restarts dead workers from that checkpoint within the trial.

Tune config shapes: table mode {"trial": <row config incl. table, row, seed>}; search mode the Optuna-sampled
keys plus the define-by-run constants and Repeater's `__trial_index__` (the seed). Sweep-wide fields (budget,
data, tracking, resources) arrive as `base` through tune.with_parameters, so a resumed sweep can pass a new
tracking URI without touching Tune's stored configs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

TRIAL_INDEX = "__trial_index__"  # ray.tune.search.repeater.TRIAL_INDEX


def search_row_id(sampled: dict[str, Any]) -> str:
    """Stable id of one sampled configuration (all its seeds share it): cfg-<8 hex>."""
    blob = json.dumps(sampled, sort_keys=True, default=str)
    return "cfg-" + hashlib.sha1(blob.encode()).hexdigest()[:8]


def trial_dict(config: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The flat trial config of one Tune trial."""
    if "trial" in config:
        return {**base, **config["trial"]}
    sampled = {k: v for k, v in config.items() if k != TRIAL_INDEX}
    return {**base, **sampled, "row": search_row_id(sampled), "seed": int(config.get(TRIAL_INDEX, 0))}


def train_driver(config: dict[str, Any], base: dict[str, Any], storage_path: str, max_failures: int) -> None:
    import ray.train
    import ray.tune
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from srprior.trainers.config import TrialConfig
    from srprior.trainers.worker import train_fn_per_worker

    name = f"train-{ray.tune.get_context().get_trial_id()}"
    cfg = TrialConfig.from_dict({**trial_dict(config, base), "storage_dir": os.path.join(storage_path, name),
                                 "trial_started_at": time.time()})
    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": cfg.gpus_per_worker} if cfg.use_gpu else {})}
    TorchTrainer(
        train_fn_per_worker,
        train_loop_config=cfg.to_dict(),
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                               resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_path, callbacks=[TuneReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=max_failures)),
    ).fit()
