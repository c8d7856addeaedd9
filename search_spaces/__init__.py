"""Declarative thesis tables and Optuna search spaces (mapped from search_spaces/ into srprior.search_spaces)."""
