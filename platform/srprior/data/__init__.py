"""Image I/O, MATLAB-exact degradation, datasets and samplers."""
