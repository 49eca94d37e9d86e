"""Benchmarks: one script per measured claim, run as python -m benchmarks.NAME."""
