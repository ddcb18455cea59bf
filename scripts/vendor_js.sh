#!/usr/bin/env bash
# Refresh the vendored widget manager of the offline HTML report (gradwidget/view/report.py).
#
# @jupyter-widgets/html-manager renders saved widget state in a page without a kernel; it is on
# the npm registry only (no Python wheel carries it), so its AMD build is kept in the package.
# The version is pinned and the tarball's SHA-256 checked, so a rerun gives the same bytes.
# bqplot's and bqscales' JavaScript is not vendored: the report takes it from the installed
# wheels, so it always matches the Python side of the widgets.
#
# Usage: scripts/vendor_js.sh   (needs npm and the project's venv python for the LICENSE)
set -euo pipefail

VERSION="1.0.15"
SHA256="2b9d65cb7913e1c7d671757a10008b32c9c2448d4429513371e55c07d6107638"
PYTHON="${PYTHON:-python}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/gradwidget/_static/html-manager"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && npm pack --silent "@jupyter-widgets/html-manager@$VERSION" >/dev/null)
tarball="$tmp/jupyter-widgets-html-manager-$VERSION.tgz"
echo "$SHA256  $tarball" | sha256sum --check --quiet -
tar -xzf "$tarball" -C "$tmp"

mkdir -p "$dest"
# libembed-amd.js: the manager as named AMD modules, without embed-amd.js's automatic render
# (the report starts it itself, with a loader that never falls back to a CDN).
install -m 644 "$tmp/package/dist/libembed-amd.js" "$dest/libembed-amd.js"
install -m 644 "$tmp/package/dist/embed.js.LICENSE.txt" "$dest/THIRD_PARTY_LICENSES.txt"
# Font Awesome Free 5.15.4 (fonts: SIL OFL 1.1, https://fontawesome.com/license/free), which
# the manager's CSS loads from files beside the page: the report inlines the two it draws
# (bqplot's toolbar and button icons). Webpack named them by content hash.
install -m 644 "$tmp/package/dist/1551f4f60c37af51121f.woff2" "$dest/fa-solid-900.woff2"
install -m 644 "$tmp/package/dist/7a3337626410ca2f4071.woff2" "$dest/fa-regular-400.woff2"
# The npm tarball has no LICENSE file; the package is ipywidgets', under ipywidgets' licence,
# which the ipywidgets wheel ships.
"$PYTHON" - "$dest/LICENSE" <<'PY'
import sys
from importlib.metadata import distribution

dist = distribution("ipywidgets")
licence = next(f for f in dist.files if f.name == "LICENSE")
open(sys.argv[1], "w").write(licence.read_text())
PY
cat > "$dest/FONTS_LICENSE.txt" <<'TXT'
fa-solid-900.woff2 and fa-regular-400.woff2: Font Awesome Free 5.15.4 by @fontawesome,
https://fontawesome.com. License: https://fontawesome.com/license/free (Icons: CC BY 4.0,
Fonts: SIL OFL 1.1, Code: MIT License). Copied unchanged from @jupyter-widgets/html-manager.
TXT
# What was vendored, and the file's own checksum (tests/test_report.py checks it).
{
    echo "@jupyter-widgets/html-manager@$VERSION tarball-sha256:$SHA256"
    (cd "$dest" && sha256sum libembed-amd.js fa-solid-900.woff2 fa-regular-400.woff2)
} > "$dest/VERSION"
ls -l "$dest"
