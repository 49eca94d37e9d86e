"""Data layer: xarray in, tensors out (one adapter per data shape)."""
