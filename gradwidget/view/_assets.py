"""The JavaScript an offline report inlines: an AMD loader, the widget manager, widget bundles.

The manager (``@jupyter-widgets/html-manager``, vendored by ``scripts/vendor_js.sh``) brings
the ipywidgets base, controls and output models. Every other widget library in a state (bqplot,
bqscales) is taken from the AMD bundle its wheel installs under ``nbextensions/``, so the
JavaScript always matches the installed Python side.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_path

from ..errors import GradWidgetError

__all__ = ["Script", "font_faces", "page_scripts"]

_STATIC = files("gradwidget") / "_static"
_MANAGER = "html-manager/libembed-amd.js"
# Modules the manager itself defines: no bundle to look for.
_BUILT_IN = frozenset(
    {"@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/output"}
)


# Font Awesome faces of the manager's CSS, which it would fetch from files beside the page.
_ICON_FAMILY = '"gradwidget icons"'
_FONTS = {900: "html-manager/fa-solid-900.woff2", 400: "html-manager/fa-regular-400.woff2"}


@dataclass(frozen=True)
class Script:
    """One inline ``<script>``: its source, and the AMD name of an anonymous ``define()``."""

    source: str
    amd_name: str | None = None


def page_scripts(state: Mapping[str, Any]) -> list[Script]:
    """Loader, manager and one bundle per widget library used in ``state``, in page order."""
    loader = Script((_STATIC / "amd-loader.js").read_text(encoding="utf-8"))
    manager = Script((_STATIC / _MANAGER).read_text(encoding="utf-8"))
    bundles = [Script(_bundle(name).read_text(encoding="utf-8"), name) for name in modules(state)]
    return [loader, manager, *bundles]


def font_faces() -> str:
    """CSS that draws the icons from fonts inlined as data URIs.

    The faces get a family of their own, and the icon classes are pointed at it with
    ``!important`` (the manager's CSS comes later): Chromium fetches the manager's "Font
    Awesome 5 Free" files as soon as an icon is laid out in that family, even if a later rule
    of the same family holds the data.
    """
    rules = [f".fa, .fas, .far {{ font-family: {_ICON_FAMILY} !important; }}"]
    for weight, name in _FONTS.items():
        data = base64.b64encode((_STATIC / name).read_bytes()).decode("ascii")
        rules.append(
            f"@font-face {{ font-family: {_ICON_FAMILY}; font-style: normal; "
            f"font-weight: {weight}; font-display: block; "
            f'src: url(data:font/woff2;base64,{data}) format("woff2"); }}'
        )
    return "\n".join(rules)


def modules(state: Mapping[str, Any]) -> list[str]:
    """The JavaScript modules of the models and views in ``state`` not built into the manager."""
    # The model's module is always given; a view module only when not the trait's default.
    named = {e["model_module"] for e in state.values()}
    named |= {e["state"].get("_view_module") for e in state.values()}
    return sorted(name for name in named if name and name not in _BUILT_IN)


def _bundle(module: str) -> Path:
    """The AMD bundle a widget library's wheel installs (``nbextensions/<module>/index.js``)."""
    for folder in jupyter_path("nbextensions"):
        candidate = Path(folder, module, "index.js")
        if candidate.is_file():
            return candidate
    raise GradWidgetError(
        f"The report needs the JavaScript of the widget library {module!r}, and no "
        f"nbextensions/{module}/index.js was found on the Jupyter data path. Reinstall it "
        f"(pip install --force-reinstall {module}) and export again."
    )
