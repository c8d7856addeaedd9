"""The method: self-similarity extractor, attribution prior, training step, attribution analyses."""
