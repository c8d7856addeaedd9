"""SR architectures, one file each; presets are data (name -> kwargs)."""
