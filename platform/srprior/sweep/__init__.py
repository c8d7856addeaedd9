"""The sweep library behind `srprior sweep` (srprior.commands.sweep): view (the plan as text, seeds for power,
resources), launch (Ray, parent runs, the Tune experiment), run (run_sweep: check, lease, launch, report).

Resources: srprior.trainers.resources (fractional CPUs/GPUs per trial, concurrency).
"""

from srprior.errors import UserError


class SweepError(UserError, ValueError):
    """Invalid sweep arguments (resume, names, fusion with DDP); raised before Ray starts."""
