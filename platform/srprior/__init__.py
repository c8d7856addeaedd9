"""srprior: the non-local attribution prior for single-image super-resolution, on Ray, MLflow and Optuna."""

__version__ = "0.1.0"
