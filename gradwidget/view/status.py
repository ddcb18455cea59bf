"""Status line, progress bar and error box of the panel."""

from __future__ import annotations

import html
import traceback

import ipywidgets as w

from ..session import SourceStatus

__all__ = ["StatusBar"]

_COLOURS = {
    "info": "inherit",  # the theme's text colour: dark grey vanishes on a dark theme
    "ok": "#2ca02c",
    "warn": "#b35900",
    "error": "#d62728",
}


class StatusBar(w.VBox):
    """One status sentence, an ``IntProgress`` shown while training, and a hidden error box.

    The error box is an ``Output`` (css ``gw-error``) filled with ``append_stderr``, which is
    safe from a background thread, unlike ``with output:`` (ipywidgets#4020).
    """

    def __init__(self) -> None:
        self.label = w.HTML()
        self.label.add_class("gw-status")
        self.progress = w.IntProgress(min=0, max=1, layout=w.Layout(visibility="hidden"))
        self.progress.add_class("gw-progress")
        self.errors = w.Output(layout=w.Layout(display="none", max_height="200px"))
        self.errors.add_class("gw-error")
        self.text = ""
        super().__init__([w.HBox([self.label, self.progress]), self.errors])

    def say(self, text: str, tone: str = "info") -> None:
        """Show ``text`` in the tone's colour ("info", "ok", "warn" or "error")."""
        self.text = text
        colour = _COLOURS[tone]
        self.label.value = f'<span style="color:{colour}">{html.escape(text)}</span>'

    def show_progress(self, step: int, total: int | None) -> None:
        """Fill the bar to ``step`` of ``total``; hide it when ``total`` is None."""
        bar = self.progress
        with bar.hold_sync():
            bar.max = max(1, total or 1)
            bar.value = min(step, bar.max)
            bar.layout.visibility = "visible" if total else "hidden"

    def show(self, status: SourceStatus) -> None:
        """Show where a source stands: its sentence, its progress while it runs, and the
        traceback (red) if it failed."""
        if status.error is not None:
            self.progress.layout.visibility = "hidden"
            self.show_error(status.text, status.error)
            return
        self.say(status.text, status.tone)
        self.show_progress(status.step, None if status.ended else status.total)

    def show_error(self, message: str, error: BaseException | None) -> None:
        """Turn the status red and append ``message`` and the traceback to the error box."""
        self.say(message, "error")
        details = "".join(traceback.format_exception(error)) if error is not None else ""
        self.errors.append_stderr(f"{message}\n{details}")
        self.errors.layout.display = "block"
