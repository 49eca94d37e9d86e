"""Entry points: thin Hydra shims, one per scheduled job."""
