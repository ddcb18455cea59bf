"""The on-disk log of a run: writer, incremental reader, terminal console (no torch needed)."""
