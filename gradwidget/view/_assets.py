"""The JavaScript an offline report inlines: an AMD loader, the widget manager, widget bundles.

They are inlined packed (:func:`packed`: gzip, then base64) and unpacked by the browser's own
``DecompressionStream`` (``_static/unpack.js``): the two-run digits report weighs about a
fifth of its plain size (docs/performance.md).

The manager (``@jupyter-widgets/html-manager``, vendored by ``scripts/vendor_js.sh``) brings
the ipywidgets base, controls and output models. Every other widget library in a state (bqplot,
bqscales) is taken from the AMD bundle its wheel installs under ``nbextensions/``, so the
JavaScript always matches the installed Python side.
"""

from __future__ import annotations

import base64
import gzip
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_path

from ..errors import GradWidgetError

__all__ = ["Script", "font_faces", "packed", "page_scripts", "unpacker"]

_STATIC = files("gradwidget") / "_static"
_MANAGER = "html-manager/libembed-amd.js"
# Modules the manager itself defines: no bundle to look for.
_BUILT_IN = frozenset(
    {"@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/output"}
)
# The manager also bundles the ipywidgets 7 modules (a quarter of its size), used only for
# widget states saved by ipywidgets 7 (model versions 1.x): left out of other reports.
_LEGACY = ("base7", "controls7")
_BLOCK = "/*! For license information please see "  # each bundled module starts with it


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
    manager = Script(_manager(legacy=_legacy(state)))
    bundles = [Script(_bundle(name).read_text(encoding="utf-8"), name) for name in modules(state)]
    return [loader, manager, *bundles]


def packed(text: str) -> str:
    """``text`` gzipped and base64-encoded: what ``_static/unpack.js`` unpacks.

    The gzip header's time stamp is fixed, so the same report gives the same bytes.
    """
    data = gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)
    return base64.b64encode(data).decode("ascii")


def unpacker() -> str:
    """The script that unpacks the packed scripts and then calls ``gradwidgetRender()``."""
    return (_STATIC / "unpack.js").read_text(encoding="utf-8")


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


def _legacy(state: Mapping[str, Any]) -> bool:
    """True when a widget of ``state`` was saved by ipywidgets 7: base or controls 1.x (the
    output model is 1.0.0 in both)."""
    legacy = ("@jupyter-widgets/base", "@jupyter-widgets/controls")
    return any(
        e["model_module"] in legacy and str(e.get("model_module_version", "")).lstrip("^~")[:2]
        == "1."
        for e in state.values()
    )  # fmt: skip


def _manager(legacy: bool) -> str:
    """The manager's bundle; without the ipywidgets 7 modules unless ``legacy``."""
    source = (_STATIC / _MANAGER).read_text(encoding="utf-8")
    if legacy:
        return source
    blocks = source.split(_BLOCK)
    kept = [b for b in blocks if not re.match(rf"({'|'.join(_LEGACY)})\.js\b", b)]
    return _BLOCK.join(kept)


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
