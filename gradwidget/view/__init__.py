"""The notebook side of gradwidget: the only package that imports ipywidgets and bqplot."""

from __future__ import annotations

from .explorer import Explorer, explore
from .panel import GradPanel, RunRecord, watch

__all__ = ["Explorer", "GradPanel", "RunRecord", "explore", "watch"]
