"""Benchmarks of what gradwidget costs, measured interleaved against plain training.

Run ``python -m benchmarks`` (or ``make bench``); ``--quick`` for a fast pass. Results go to
``benchmarks/results/`` as markdown and JSON. Nothing here is imported by ``gradwidget``.
"""
