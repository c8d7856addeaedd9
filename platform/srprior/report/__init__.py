"""The report library behind `srprior report` (srprior.commands.report): rebuild a thesis table from a sweep's MLflow runs, next to the numbers the thesis printed.

Each cell is our mean ± sample std over seeds (ddof=1), marked † / ‡ when Welch's t-test against the row's
baseline gives p < 0.05 / 0.01 (seed counts differ and variances need not be equal, hence Welch), bold when it
is the best mean of its column within the model group, followed by the thesis's "(mean ± std)". Written as
Markdown (also printed), CSV (long format, with p-values) and a self-contained HTML file, and logged as artifacts
to the sweep's parent run so the table travels with the runs it was computed from.

Modules: model (cells read from MLflow, statistics), render (text formats), write (files and artifacts),
cells (which cells a report reads), power (seeds for power), search (an Optuna search as a table), plots
(the summary figure).
"""
