"""The `search` mode's Optuna space: the prior's hyperparameters around the thesis's hand-picked settings.

Define-by-run (Ray Tune's `OptunaSearch(space=...)`): the sampled parameters become trial-config keys, the
returned constants (preset, scale) are merged in. Each configuration is repeated over `seeds` seeds (Ray's
`Repeater`) and Optuna is told the mean of `metric`, because single-seed differences between settings are as
small as the seed noise (thesis Tables 4.2–4.5). The baseline (λ_AP = 0) is not searched: it is Table 4.2's row.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from srprior.contracts import OBJECTIVE, search_experiment
from srprior.method.ssm import SCENARIOS
from srprior.search_spaces.spec import validate_overrides


@dataclass(frozen=True)
class SearchSpec:
    """One search: which model, how many configurations × seeds, the objective and the ranges searched."""

    name: str
    preset: str
    seeds: int = 2
    n_configs: int = 16
    metric: str = OBJECTIVE
    mode: str = "max"
    scale: int = 2
    lambda_ap: tuple[float, float] = (1e-6, 1e-2)  # log-uniform; the thesis tried 1e-5 … 1e-2
    w: tuple[float | str, ...] = (0.1, 0.5, 1.0, "sim")  # Table 4.3
    n_ssr: tuple[int, int] = (1, 5)  # Table 4.4 tried 1–3; the candidate SSM holds 5
    scenarios: tuple[str, ...] = SCENARIOS

    def __post_init__(self) -> None:
        where = f"search {self.name!r}"
        if self.seeds < 1 or self.n_configs < 1:
            raise ValueError(f"{where}: seeds={self.seeds} and n_configs={self.n_configs} must be >= 1")
        if self.mode not in ("max", "min"):
            raise ValueError(f"{where}: mode={self.mode!r} must be 'max' or 'min'")
        lo, hi = self.lambda_ap
        if not 0 < lo < hi:
            raise ValueError(f"{where}: lambda_ap range {self.lambda_ap} must satisfy 0 < low < high (log scale)")
        if not 1 <= self.n_ssr[0] <= self.n_ssr[1]:
            raise ValueError(f"{where}: n_ssr range {self.n_ssr} must satisfy 1 <= low <= high")
        if not self.w or not self.scenarios:
            raise ValueError(f"{where}: w and scenarios need at least one choice each")
        validate_overrides({"preset": self.preset, "scale": self.scale, "n_ssr": self.n_ssr[1]}, where)
        for w in self.w:
            validate_overrides({"w": w}, where)
        for scenario in self.scenarios:
            validate_overrides({"scenario": scenario}, where)

    @property
    def experiment(self) -> str:
        """MLflow experiment of this search's sweeps and trial runs."""
        return search_experiment(self.name)

    @property
    def num_samples(self) -> int:
        """Tune trials: every configuration once per seed (Repeater(repeat=seeds))."""
        return self.n_configs * self.seeds

    @property
    def space(self) -> Callable[[Any], dict[str, Any]]:
        """The define-by-run function the sweep gives `OptunaSearch(space=...)`: samples this search's ranges and
        returns no constants — preset and scale come from the plan's base science, where the budget's preset swap
        (e.g. edsr-t → edsr-t-micro) is applied; returning them here would undo it."""
        return partial(_sampled, search=self)


def define_space(trial: Any, search: SearchSpec | None = None) -> dict[str, Any]:
    """Sample λ_AP, w, N_SSR and the scenario on `trial` (optuna.Trial or Ray's wrapper of it); return constants."""
    search = search or SEARCHES["edsr-t"]
    trial.suggest_float("lambda_ap", *search.lambda_ap, log=True)
    trial.suggest_categorical("w", list(search.w))
    trial.suggest_categorical("scenario", list(search.scenarios))
    trial.suggest_int("n_ssr", *search.n_ssr)
    return {"preset": search.preset, "scale": search.scale}


def _sampled(trial: Any, search: SearchSpec) -> dict[str, Any]:
    define_space(trial, search)
    return {}


SEARCHES: dict[str, SearchSpec] = {
    spec.name: spec
    for spec in (
        SearchSpec("edsr-t", preset="edsr-t", seeds=2, n_configs=24),
        SearchSpec("rnan-t", preset="rnan-t", seeds=2, n_configs=16),
        SearchSpec("smoke", preset="edsr-t-micro", seeds=2, n_configs=2),
    )
}


def get_search(name: str) -> SearchSpec:
    if name not in SEARCHES:
        raise KeyError(f"unknown search {name!r}; available: {', '.join(SEARCHES)}")
    return SEARCHES[name]
