"""Closing a tree of widgets: figures hold marks, marks hold scales, none close their parts."""

from __future__ import annotations

from typing import Any

from ipywidgets import Widget

__all__ = ["close_tree"]


def close_tree(root: Widget) -> None:
    """Close ``root`` and every widget reachable through its synced traits."""
    seen: set[int] = set()
    stack: list[Any] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, Widget) and id(item) not in seen:
            seen.add(id(item))
            stack.extend(getattr(item, key, None) for key in item.keys)
            Widget.close(item)  # not an override such as GradPanel.close, which calls us
