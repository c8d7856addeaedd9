"""A sweep's options as one typed value: built once from the command line (`SweepOptions.of`, the one place a
mapping becomes options), stored as JSON on the sweep's parent run (contracts.OPTIONS_TAG) and in its state file,
rebuilt from there by `--resume`, and passed to the planner, the launcher and Tune — which accept nothing else
(`SweepOptions.require`). Precedence, written once: the platform's defaults (the fields below), then the budget,
then the table's own budget rows, then the user (srprior.plan.make_plan merges the science in that order).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from srprior.errors import UserError

# Options of this run of the command, not of the sweep: never stored, and `--resume` takes them from the new
# command line (the rest comes from the stored sweep).
RUNTIME = ("resume", "max_concurrent", "address", "num_cpus", "max_failures", "output_dir", "plan",
           "retrain", "seeds_for_power", "verbose", "shared_storage", "json")


class OptionsError(UserError, ValueError):
    """Options that `srprior sweep` does not have (a sweep stored by another srprior version, a typo)."""


@dataclass(frozen=True)
class SweepOptions:
    """Every option of `srprior sweep` (see its --help); None: the budget's or the platform's default."""

    table: str | None = None
    search: str | None = None
    budget: str = "smoke"
    plan: bool = False
    json: bool = False  # --plan --json: the plan as one JSON object
    retrain: bool = False
    seeds: int | None = None
    row_seeds: tuple[str, ...] = ()  # TABLE:ROW=N: seeds of one row over --seeds (the sequential design's looks)
    until_decided: bool = False
    seeds_for_power: float | None = None
    rows: str | None = None
    samples: int | None = None
    asha: bool = False
    steps: int | None = None
    set: tuple[str, ...] = ()  # KEY=VALUE science overrides, in the order given
    data_root: str | None = None
    train_root: str | None = None
    benchmarks: str | None = None
    max_eval_images: int | None = None
    no_di: bool = False
    figures: bool | None = None
    cuda_graph: bool = False
    output_dir: str | None = None
    storage: str | None = None
    shared_storage: bool = False
    name: str | None = None
    resume: str | None = None
    workers: int = 1  # Train workers per trial (DDP when > 1)
    fuse: int | None = None
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    num_cpus: int | None = None
    address: str | None = None
    max_failures: int = 3  # Train restarts of a trial from its last checkpoint
    verbose: bool = False
    fault_kill_at_step: int | None = None  # tests: kill a worker once at this step

    @classmethod
    def of(cls, values: Mapping[str, Any] | SweepOptions) -> SweepOptions:
        """From a mapping (argparse's vars(), a stored JSON object, a test); None means the default."""
        if isinstance(values, SweepOptions):
            return values
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known - {"func", "command"})
        if unknown:
            raise OptionsError(f"sweep options {', '.join(unknown)}: no such option of `srprior sweep` (see its "
                               "--help)")
        given = {k: v for k, v in values.items() if k in known and v is not None}
        for key in ("set", "row_seeds"):
            if key in given:
                given[key] = tuple(given[key])
        return cls(**given)

    @classmethod
    def require(cls, value: Any, where: str) -> SweepOptions:
        """`value` when it is options; a mapping is refused (build it with SweepOptions.of at the boundary)."""
        if not isinstance(value, cls):
            raise TypeError(f"{where} takes SweepOptions, not {type(value).__name__}: build them once with "
                            "SweepOptions.of(...)")
        return value

    def replace(self, **changes: Any) -> SweepOptions:
        return dataclasses.replace(self, **changes)

    def stored(self) -> dict[str, Any]:
        """What the sweep's parent run and state file keep: the options that define the sweep, set ones only."""
        return {f.name: (list(v) if isinstance(v, tuple) else v) for f in dataclasses.fields(self)
                if f.name not in RUNTIME and (v := getattr(self, f.name)) is not None}

    def to_json(self) -> str:
        return json.dumps(self.stored(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SweepOptions:
        return cls.of(json.loads(text))

    def resumed_by(self, command: SweepOptions) -> SweepOptions:
        """This stored sweep continued by `command` (`--resume`): its runtime options win, the rest is stored."""
        return self.replace(**{k: getattr(command, k) for k in RUNTIME})
