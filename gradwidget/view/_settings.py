"""The settings of a panel's runs in words, for a report a reader can reproduce."""

from __future__ import annotations

from dataclasses import asdict, fields
from importlib.metadata import PackageNotFoundError, version
from typing import Any

__all__ = ["rows", "versions"]

_PACKAGES = ("torch", "ipywidgets", "bqplot")


def rows(panel: Any) -> list[tuple[str, str]]:
    """(setting, value) pairs: the model, the mode, the training config, the thresholds."""
    model = panel.model
    n_params = sum(p.numel() for p in model.parameters())
    out = [
        ("model", f"{type(model).__name__}, {n_params:,} parameters"),
        ("mode", _mode(panel)),
    ]
    if panel.recorder is None:  # the config trained these runs; an own loop has its own
        out += [(f.name, _text(getattr(panel.config, f.name))) for f in fields(panel.config)]
    limits = ", ".join(f"{k}={v:g}" for k, v in asdict(panel.thresholds).items())
    out.append(("diagnosis thresholds", limits))
    return out


def versions() -> str:
    """ "gradwidget 0.1.0 · torch 2.13.0 · ..." for the packages that drew the report."""
    from .. import __version__

    others = (f"{name} {_version(name)}" for name in _PACKAGES)
    return " · ".join((f"gradwidget {__version__}", *others))


def _mode(panel: Any) -> str:
    if panel.recorder is not None:
        return "your own training loop (panel.capture)"
    return f"managed: {len(panel.runs)} run(s), each on a fresh copy of the model, same seed"


def _text(value: Any) -> str:
    if value is None:
        return "default"
    if callable(value):  # an optimizer factory or a loss function
        return getattr(value, "__qualname__", None) or type(value).__name__
    return str(value)


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:  # e.g. a source checkout on the path, not installed
        return "?"
