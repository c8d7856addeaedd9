"""Ray Train per-worker training functions (mapped from trainers/ into srprior.trainers)."""
