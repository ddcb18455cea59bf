"""The one place where recorded values cross from the device to the host.

On a GPU, ``.item()``, ``.cpu()`` or ``.tolist()`` blocks the host until the device has caught
up with every kernel queued so far (pytorch#91846). The recorder therefore hands what it
measured to :meth:`HostLink.send` as device tensors; they are concatenated into one flat tensor
on the device and copied with ``non_blocking=True`` into pinned host memory, and a CUDA event is
recorded behind the copy. :meth:`HostLink.receive` returns the copies whose event has
completed: the host reads them at a later flush, and the training loop never waits. On CPU the
flat tensor already is host memory and lands at once, through the same two calls.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["HostLink", "Landed", "wide"]


def wide(device: torch.device) -> torch.dtype:
    """float64 where the device has it: a float32 square overflows for norms above 1.8e19."""
    return torch.float32 if device.type == "mps" else torch.float64


@dataclass(frozen=True)
class Landed:
    """One transfer that has reached the host: its tag and its named parts as numpy arrays."""

    tag: Any
    values: dict[str, np.ndarray]


@dataclass(frozen=True)
class _InFlight:
    tag: Any
    layout: tuple[tuple[str, int], ...]  # (name, number of values) of each part, in order
    host: torch.Tensor
    event: Any  # a torch.cuda.Event, or None when the copy was synchronous


class HostLink:
    """Copies device tensors to the host, one flat transfer per :meth:`send`.

    Parameters
    ----------
    device : torch.device
        Where the tensors live. CUDA copies are asynchronous; any other device is read at once.

    Attributes
    ----------
    transfers : int
        Device-to-host transfers made so far (the tests count them).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._dtype = wide(device)
        self.transfers = 0
        self._queue: deque[_InFlight] = deque()

    @property
    def synchronous(self) -> bool:
        """True when a sent tensor lands at once (the device is host memory, or not CUDA)."""
        return self.device.type != "cuda"

    @property
    def pending(self) -> int:
        """Transfers sent and not yet received."""
        return len(self._queue)

    def send(self, parts: dict[str, torch.Tensor], tag: Any = None) -> None:
        """Start one transfer of ``parts`` (float64, float32 on MPS), labelled ``tag``."""
        layout = tuple((name, t.numel()) for name, t in parts.items())
        on_device = [t if t.device == self.device else t.to(self.device) for t in parts.values()]
        flat = torch.cat([t.reshape(-1) for t in on_device]).to(self._dtype)  # cat promotes
        self.transfers += 1
        if self.synchronous:
            self._queue.append(_InFlight(tag, layout, flat.cpu(), None))
            return
        host = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
        host.copy_(flat, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._queue.append(_InFlight(tag, layout, host, event))

    def receive(self, wait: bool = False) -> Iterator[Landed]:
        """The transfers that have landed, oldest first; with ``wait``, all of them.

        Without ``wait`` nothing blocks: a copy still on its way stays queued for later.
        """
        queue = self._queue
        while queue and (wait or queue[0].event is None or queue[0].event.query()):
            item = queue.popleft()
            if item.event is not None:
                item.event.synchronize()  # already complete unless waiting was asked for
            yield Landed(item.tag, _unflatten(item.layout, item.host.numpy()))


def _unflatten(layout: tuple[tuple[str, int], ...], flat: np.ndarray) -> dict[str, np.ndarray]:
    """Cut one flat host copy back into the named parts it was made of."""
    values, start = {}, 0
    for name, size in layout:
        values[name] = flat[start : start + size]
        start += size
    return values
