"""The diagnosis box: findings in plain words, with their numbers and the layers they name."""

from __future__ import annotations

import html
from collections.abc import Sequence

import ipywidgets as w

from ..diagnose.rules import Finding, Severity

__all__ = ["HEALTHY", "DiagnosisBox"]

HEALTHY = "No problems found so far."
_ICONS = {Severity.CRITICAL: "⛔", Severity.WARNING: "⚠️", Severity.INFO: "ℹ️"}
_COLOURS = {Severity.CRITICAL: "#d62728", Severity.WARNING: "#b35900", Severity.INFO: "#1f77b4"}


def render(findings: Sequence[Finding], labels: dict[str, str]) -> str:
    """HTML for ``findings`` (most severe first), or the all-clear sentence."""
    if not findings:
        return f'<div style="color:#2ca02c">✔ {HEALTHY}</div>'
    return "".join(_render_one(f, labels) for f in findings)


def _render_one(finding: Finding, labels: dict[str, str]) -> str:
    colour, icon = _COLOURS[finding.severity], _ICONS[finding.severity]
    parts = [f'<b style="color:{colour}">{icon} {html.escape(finding.title)}</b>']
    parts.append(html.escape(finding.message))
    if finding.layers:
        parts.append(
            "Layers: " + ", ".join(f"<code>{html.escape(n)}</code>" for n in finding.layers)
        )
    if finding.evidence:
        numbers = ", ".join(f"{html.escape(k)} = {v:.3g}" for k, v in finding.evidence.items())
        parts.append(f'<span style="opacity:0.75">{numbers}</span>')
    if finding.remedies:
        parts.append("Try: " + ", ".join(labels.get(r, r) for r in finding.remedies))
    return '<div style="margin-bottom:6px">' + "<br>".join(parts) + "</div>"


class DiagnosisBox(w.HTML):
    """An HTML widget (css ``gw-diagnosis``) showing the latest findings."""

    def __init__(self, labels: dict[str, str]) -> None:
        # Bounded, so a long list of findings never pushes the fix controls off the screen.
        layout = w.Layout(max_height="210px", overflow="auto", width="100%")
        super().__init__(value="<i>Waiting for gradients…</i>", layout=layout)
        self.labels = labels
        self.findings: tuple[Finding, ...] = ()
        self.add_class("gw-diagnosis")

    def show(self, findings: Sequence[Finding]) -> None:
        """Replace the shown findings."""
        self.findings = tuple(findings)
        self.value = render(self.findings, self.labels)
