"""The report library behind `srprior report` (srprior.commands.report): rebuild a thesis table from a sweep's MLflow runs, next to the numbers the thesis printed.

Each cell is our mean ± sample std over seeds (ddof=1), marked † / ‡ when the paired t-test over the seeds it
shares with the row's baseline gives p < 0.05 / 0.01 (Welch's when fewer than 2 seeds match), bold when it is
the best mean of its column within the model group, followed by the thesis's "(mean ± std)". Every view carries
the caption of what ran (srprior.report.setting) and the thesis's claims (srprior.report.claims). Written as
Markdown (also printed), CSV (long format, with p-values) and a self-contained HTML file, and logged as artifacts
to the sweep's parent run so the table travels with the runs it was computed from.

Modules: model (cells read from MLflow, statistics), render (text formats), claims (the claims' rows and lines),
setting (what the runs were: presets, schedule, caption), names (column names), write (files and artifacts),
cells (which cells a report reads), power (seeds for power), search (an Optuna search as a table), plots
(the summary figure).
"""
