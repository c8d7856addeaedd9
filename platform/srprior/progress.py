"""What a sweep shows while it runs: one progress line of our own instead of Ray's per-trial boxes and logs.

`SweepProgress` is a Ray Tune callback (it runs in the driver): a tqdm bar over the training steps of every
Ray Train run, with the trials done / running / failed / reused and an ETA. `quiet_ray()` silences Ray's own
output at the source (log forwarding, Tune's tables, auto loggers); `--verbose` keeps all of it.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from ray.tune import Callback

from srprior import contracts

QUIET_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # no CSV/JSON/TensorBoard loggers, no TensorBoard hint
    "RAY_AIR_NEW_OUTPUT": "0",  # Tune's classic reporter honours verbose=0 (the new one prints its config box)
}


def quiet_ray(num_cpus: int | None = None) -> dict[str, Any]:
    """Environment set before Ray starts and the ray.init arguments that keep the console ours. A sweep starts
    several small actors per trial (driver 0.1 CPU, controller, workers): the raylet's warning about more
    worker start-ups than cores is expected, so the start-up concurrency is raised to what a sweep uses."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if num_cpus:
        os.environ.setdefault("RAY_worker_maximum_startup_concurrency", str(4 * num_cpus))
    for name in ("ray", "ray.tune", "ray.train", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    controller = logging.getLogger("ray.tune.execution.tune_controller")
    if not any(isinstance(f, OneLineTrialErrors) for f in controller.filters):
        controller.addFilter(OneLineTrialErrors())
    return {"log_to_driver": False, "logging_level": logging.ERROR}


class OneLineTrialErrors(logging.Filter):
    """Tune logs a failed trial with its whole remote traceback; the console gets the reason in one line (the
    traceback stays in the trial folder's error.txt, where Tune writes it), and the sweep's summary says what
    happens next (a disk full ends the sweep with the resume command)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            cause = getattr(error, "cause", None) or error  # a RayTaskError wraps the trial's own exception
            lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
            reason = lines[-1] if lines else type(cause).__name__
            record.msg, record.args = f"{record.getMessage()}: {reason} (traceback: the trial folder's error.txt)", ()
            record.exc_info = record.exc_text = None
        return True


class SweepProgress(Callback):
    """tqdm over all training steps of the sweep's Ray Train runs; counts members (trials), not runs."""

    def __init__(self, runs: list[tuple[int, int]], reused: int, desc: str = "training"):
        """runs: (members, steps) of every Ray Train run Tune will start, in order."""
        from tqdm import tqdm

        self.runs, self.reused, self.desc = runs, reused, desc
        self.total_trials = sum(m for m, _ in runs)
        self.done = self.failed = 0
        self.steps: dict[str, int] = {}
        self.members: dict[str, int] = {}
        self.waiting: set[str] = set()  # trials waiting for another sweep that trains them (srprior.locks)
        self.bar = tqdm(total=sum(s for _, s in runs), unit="step", desc=desc, dynamic_ncols=True,
                        mininterval=1 if sys.stderr.isatty() else 30, file=sys.stderr,
                        bar_format="{desc} {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} steps "
                                   "[{elapsed}<{remaining}]{postfix}")
        self._postfix()

    def __reduce__(self) -> tuple:
        """Tune pickles its callbacks with the experiment (for a restore); the bar and its stream are rebuilt
        rather than pickled (a redirected stderr, e.g. under pytest, cannot be)."""
        return type(self), (self.runs, self.reused, self.desc)

    def _postfix(self) -> None:
        waiting = sum(self.members.get(t, 0) for t in self.waiting)
        running = sum(self.members.values()) - waiting
        wait = f" · {waiting} waiting for another sweep training them" if waiting else ""
        self.bar.set_postfix_str(f"trials {self.done}/{self.total_trials} done · {running} running{wait} · "
                                 f"{self.failed} failed · {self.reused} reused", refresh=True)

    def _members(self, trial: Any) -> int:
        members = trial.config.get("trial", {}).get("members") if isinstance(trial.config, dict) else None
        return len(members) if members else 1

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.members[trial.trial_id] = self._members(trial)
        self._postfix()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if (contracts.WAITING in result) != (trial.trial_id in self.waiting):
            self.waiting ^= {trial.trial_id}
            self._postfix()
        step = int(result.get(contracts.STEP, 0) or 0)
        self.bar.update(max(0, step - self.steps.get(trial.trial_id, 0)))
        self.steps[trial.trial_id] = max(step, self.steps.get(trial.trial_id, 0))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        members = self.members.pop(trial.trial_id, self._members(trial))
        self.waiting.discard(trial.trial_id)
        failed = int((trial.last_result or {}).get(contracts.MEMBERS_FAILED, 0) or 0)
        reused = int((trial.last_result or {}).get(contracts.MEMBERS_REUSED, 0) or 0)  # another sweep trained them
        self.done += members - failed - reused
        self.failed += failed
        self.reused += reused
        self._postfix()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.failed += self.members.pop(trial.trial_id, self._members(trial))
        self._postfix()

    def close(self) -> None:
        self.bar.close()
