"""``comparison()``'s DataFrame, shown in a notebook as the comparison table in words."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict

import pandas as pd

from ..session.summary import COLUMNS, RunSummary
from .table import to_html

__all__ = ["Comparison"]


class Comparison(pd.DataFrame):
    """A plain DataFrame of :class:`RunSummary` fields (code reads its columns) whose notebook
    display uses words for headers and formats each number for its meaning."""

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        return pd.DataFrame  # a slice or a computation is an ordinary frame

    @classmethod
    def of(cls, rows: Sequence[RunSummary]) -> Comparison:
        """The frame of ``rows``, one per run, columns :data:`COLUMNS`."""
        return cls([asdict(row) for row in rows], columns=list(COLUMNS))

    def _repr_html_(self) -> str | None:
        if tuple(self.columns) != COLUMNS:  # reshaped by the user: pandas' own table
            return super()._repr_html_()
        records = self.to_dict("records")
        return to_html([RunSummary(**{k: _plain(k, v) for k, v in r.items()}) for r in records])


def _plain(column: str, value: object) -> object:
    """pandas turns a missing step count (None) into NaN; the table wants None back."""
    if column == "steps_to_threshold":
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
    return value
