"""Training the panel does itself: settings, seeded batches, checks, steps, runs (no UI)."""
