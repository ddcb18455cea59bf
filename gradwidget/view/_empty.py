"""A sentence inside a chart that has nothing to draw, saying why (css ``gw-empty-note``)."""

from __future__ import annotations

import html

import ipywidgets as w

__all__ = ["NotedFigure"]


class NotedFigure(w.GridBox):
    """``figure`` with a note laid over the middle of its plot, shown only while it says
    something. Both sit in one grid cell, so the figure is never hidden (bqplot lays a hidden
    figure out at zero size) and the note needs no positioning of its own."""

    def __init__(self, figure: w.DOMWidget) -> None:
        self.figure = figure
        figure.layout.grid_area = "chart"
        self.note = w.HTML(
            layout=w.Layout(
                grid_area="chart",
                align_self="center",
                margin="0 auto",
                width="fit-content",
                max_width="75%",
            )
        )
        self.note.add_class("gw-empty-note")
        layout = w.Layout(grid_template_areas='"chart"', grid_template_columns="100%")
        super().__init__([figure, self.note], layout=layout)

    def say(self, text: str) -> None:
        """Show ``text`` over the plot ("" hides the note)."""
        value = f'<div style="{_STYLE}">{html.escape(text)}</div>' if text else ""
        if self.note.value != value:
            self.note.value = value
        self.note.layout.display = "" if text else "none"


# Theme-neutral: inherits the text colour, a translucent grey box shows on white and on black.
_STYLE = (
    "font-size:13px;font-style:italic;text-align:center;padding:6px 10px;"
    "border-radius:4px;background:rgba(128,128,128,.15)"
)
