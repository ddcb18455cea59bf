"""Measuring a model while it trains: the recorder, its hooks and helpers (torch + numpy)."""
