"""The console stays ours: a failed Tune trial is one line with its reason, never Tune's remote traceback."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("ray")

from srprior.progress import quiet_ray  # noqa: E402


class _Wrapped(Exception):
    """Like ray.exceptions.RayTaskError: the remote traceback as text, the trial's own exception as `cause`."""

    def __init__(self, cause: Exception):
        super().__init__("Traceback (most recent call last):\n  File \"driver.py\", line 75\n" + str(cause))
        self.cause = cause


def test_a_failed_trial_is_one_line_with_its_reason(caplog):
    quiet_ray()
    quiet_ray()  # idempotent: one filter
    controller = logging.getLogger("ray.tune.execution.tune_controller")
    assert len(controller.filters) == 1
    cause = OSError("Training failed due to controller error:\n[Errno 28] No space left on device")
    with caplog.at_level(logging.ERROR, logger=controller.name):
        controller.error("Trial task failed for trial train_driver_00000", exc_info=_Wrapped(cause))
    (record,) = caplog.records
    assert record.exc_info is None and caplog.text.count("\n") == 1 and "Traceback" not in caplog.text
    assert record.getMessage() == ("Trial task failed for trial train_driver_00000: [Errno 28] No space left on "
                                   "device (traceback: the trial folder's error.txt)")
