"""Record per-layer gradient norms, update ratios and activation statistics from any model.

The cost model drives the design (measured in ``shared/NOTES.md``):

* Gradients are read from ``p.grad`` after backward, never with full backward hooks: those
  cost about 1.24x a step and raise on in-place modules such as ``ReLU(inplace=True)``.
* All per-parameter norms come from one fused ``torch._foreach_norm`` and a segment sum on the
  parameters' device, then **one** host transfer per captured step. A ``.item()`` per parameter
  is a blocking round trip on a GPU.
* Forward hooks slow every module call, even when they return at once, so they are attached
  only for the forward pass of a sampled step and removed at the next ``capture``.
* On tiny steps even one fused capture is a few percent of the step, so by default the
  recorder measures its own cost and widens the gradient sampling interval to stay within
  ``budget``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import GradWidgetError
from .history import History

__all__ = ["Recorder"]

# Activation modules whose output describes the health of the layer before them. The value
# names the saturation rule that applies to their output (None: only "dead" applies).
_ACTIVATIONS: dict[type[nn.Module], str | None] = {
    nn.Sigmoid: "sigmoid",
    nn.Hardsigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.Hardtanh: "tanh",
    nn.Softsign: "tanh",
    nn.ReLU: None,
    nn.ReLU6: None,
    nn.LeakyReLU: None,
    nn.ELU: None,
    nn.SELU: None,
    nn.CELU: None,
    nn.GELU: None,
    nn.SiLU: None,
    nn.Mish: None,
    nn.Softplus: None,
    nn.Hardswish: None,
}
_SATURATED_BELOW, _SATURATED_ABOVE = 0.03, 0.97  # sigmoid outputs; tanh uses |x| > 0.97
_MAX_GRAD_EVERY = 64  # never let adaptive sampling thin the gradient series more than this
_WARMUP_CAPTURES = 5  # first captures pay one-off costs; keep them out of the cost estimate
_ACT_FIELDS = ("act_mean", "act_std", "dead_frac", "saturated_frac")


@dataclass(frozen=True)
class _Layer:
    name: str
    module: nn.Module
    params: tuple[nn.Parameter, ...]


def _find_layers(model: nn.Module) -> list[_Layer]:
    """Modules owning parameters directly, in registration order; a tied weight counts once."""
    seen: set[int] = set()
    layers = []
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        if own:
            layers.append(_Layer(name or type(module).__name__, module, tuple(own)))
    return layers


def _first_tensor(output: Any) -> torch.Tensor | None:
    """The tensor a module produced (LSTM and attention return tuples)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((t for t in map(_first_tensor, output) if t is not None), None)
    return None


def _unit_dim(x: torch.Tensor, channels_first: bool) -> int:
    """Which dimension holds the units: channels for conv outputs, features otherwise."""
    if x.ndim == 3 and not channels_first:
        return 2  # (batch, time, features) from sequence models
    return 1


def _activation_stats(
    x: torch.Tensor, saturation: str | None, channels_first: bool
) -> torch.Tensor:
    """mean, std, dead fraction, saturated fraction of one output, as a device tensor (4,).

    ``sum`` and ``vector_norm`` are about 40x cheaper than ``std_mean`` on CPU, and a unit is
    dead when its largest and smallest output over the batch are both exactly zero.
    """
    x = x.detach()
    if not x.is_floating_point() or x.numel() == 0:
        return torch.full((4,), math.nan, device=x.device)
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    n = x.numel()
    mean = x.sum() / n
    std = (torch.linalg.vector_norm(x).square() / n - mean.square()).clamp_min(0).sqrt()
    if x.ndim >= 2:
        dims = tuple(d for d in range(x.ndim) if d != _unit_dim(x, channels_first))
        dead = ((x.amax(dims) == 0) & (x.amin(dims) == 0)).float().mean()
    else:
        dead = (x == 0).float().mean()
    if saturation == "sigmoid":
        saturated = ((x < _SATURATED_BELOW) | (x > _SATURATED_ABOVE)).float().mean()
    elif saturation == "tanh":
        saturated = (x.abs() > _SATURATED_ABOVE).float().mean()
    else:
        saturated = torch.tensor(math.nan, device=x.device)
    return torch.stack([mean, std, dead, saturated]).to(torch.float64)


def _norms(tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """L2 norm of each tensor, fused, stacked on ``device``."""
    norms = torch._foreach_norm(tensors)
    try:
        return torch.stack(norms)
    except RuntimeError:  # parameters of several dtypes or devices
        return torch.stack([n.to(device, torch.float32) for n in norms])


class Recorder:
    """Record per-layer gradient health of a model, step by step.

    Parameters
    ----------
    model : torch.nn.Module
        Any module. A *layer* is a submodule that owns parameters directly.
    act_every : int or None
        Sample activation statistics and update ratios every this many steps (None or 0: never).
    capacity : int
        Points kept per series in the bounded :class:`~gradwidget.History`.
    budget : float or None
        Largest fraction of a training step that gradient captures may cost; when one capture
        costs more, gradients are captured every ``grad_every`` steps instead. None: every step.

    Examples
    --------
    >>> with Recorder(model) as rec:                      # doctest: +SKIP
    ...     for x, y in batches:
    ...         opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward()
    ...         rec.capture(loss)
    ...         opt.step()
    >>> rec.history.grad_norm                             # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        act_every: int | None = 10,
        capacity: int = 1024,
        budget: float | None = 0.03,
    ) -> None:
        self._all_layers = _find_layers(model)
        if not self._all_layers:
            raise GradWidgetError(
                f"{type(model).__name__} has no parameters, so there are no gradients to "
                "record. Attach the recorder to the model you train."
            )
        self.model = model
        self.act_every = act_every or 0
        self.budget = budget
        self.step = 0
        self.grad_every = 1
        self._capacity = capacity
        self._layers = self._all_layers
        self._ordered = False
        self._history = History(self.layer_names, capacity)
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._acts: dict[str, torch.Tensor] = {}  # layer name -> stats of its latest output
        self._ran: list[str] = []  # layers in the order of the first recorded forward
        self._current: str | None = None  # the layer that ran last in this forward
        self._before_update: list[torch.Tensor] | None = None  # weights at the sampled step
        self._closed = False
        self._cost = _CostMeter()
        self._arm()  # step 0 is always sampled: it also tells the execution order

    # -- public -------------------------------------------------------------------------------

    @property
    def layers(self) -> tuple[str, ...]:
        """Layer names, input to output (execution order once a step has been captured)."""
        return self.layer_names

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self._layers)

    @property
    def history(self) -> History:
        """A snapshot of everything recorded so far, safe to keep and read anywhere."""
        return self._history.snapshot()

    @property
    def live(self) -> History:
        """The history being written (poll its ``version``; read it through copies)."""
        return self._history

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has removed the hooks."""
        return self._closed

    def capture(self, loss: torch.Tensor | float | None = None) -> None:
        """Record this step. Call after ``loss.backward()`` and before ``optimizer.step()``.

        Parameters
        ----------
        loss : torch.Tensor or float, optional
            The step's loss; recorded alongside the gradient norms.
        """
        if self._closed:
            raise GradWidgetError("This recorder is closed; create a new one to record again.")
        started = time.perf_counter()
        if not self._ordered:
            self._fix_order()
        step = self.step
        grads_due = step % self.grad_every == 0
        acts_due = bool(self.act_every) and step % self.act_every == 0
        self._flush(step, grads_due, acts_due, loss)
        self.step += 1
        self._rearm(acts_due)
        # Sampled steps also pay for activation statistics; the gradient interval is set from
        # the cost of plain gradient captures only.
        self._adapt(started, grads_due and not acts_due)

    def close(self) -> None:
        """Remove every hook this recorder added. Safe to call more than once."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()
        self._acts.clear()
        self._before_update = None
        self._closed = True

    remove = close

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"step {self.step}"
        return f"Recorder({len(self._layers)} layers, {state}, grad_every={self.grad_every})"

    # -- one captured step --------------------------------------------------------------------

    def _flush(self, step: int, grads_due: bool, acts_due: bool, loss: Any) -> None:
        """Compute what is due on the device, copy it to the host once, append to history.

        Per-parameter norms cross to the host (a few hundred floats at most) and are combined
        per layer there: a segment sum in numpy costs microseconds, a chain of small torch ops
        on CPU costs tens of them.
        """
        parts: dict[str, torch.Tensor] = {}
        device = self._param_list[0].device
        present: list[int] = []
        if grads_due:
            parts["loss"] = _loss_value(loss)
            present = [i for i, p in enumerate(self._param_list) if p.grad is not None]
            if present:
                parts["grad_norm"] = _norms([self._param_list[i].grad for i in present], device)
        if self._before_update is not None:
            parts.update(self._update_norms(device))
        if acts_due:
            parts.update(self._activation_rows(device))
            self._before_update = [p.detach().clone() for p in self._param_list]
        if parts:
            host = torch.cat([t.reshape(-1).to(device, torch.float32) for t in parts.values()])
            self._append(step, _unflatten(parts, host.cpu().numpy()), present)

    def _append(self, step: int, values: dict[str, np.ndarray], present: list[int]) -> None:
        if "loss" in values:
            norms = self._per_layer(values.pop("grad_norm", np.zeros(0)), present)
            self._history.append("loss", step, values.pop("loss"))
            self._history.append("grad_norm", step, norms)
            self._history.append("nonfinite", step, self._count_nonfinite(norms))
        if "update_norm" in values:
            everything = list(range(len(self._param_list)))
            weight = self._per_layer(values.pop("weight_norm"), everything)
            moved = self._per_layer(values.pop("update_norm"), everything)
            # The update belongs to the sampled step, before the optimizer moved the weights.
            self._history.append("weight_norm", step - 1, weight)
            self._history.append("update_ratio", step - 1, moved / weight)
        for name, row in values.items():  # activation statistics
            self._history.append(name, step, row)

    def _per_layer(self, norms: np.ndarray, present: list[int]) -> np.ndarray:
        """Per-layer L2 norm from per-parameter ones: sqrt of the sum of squares (NaN: none)."""
        owner = self._owner[present]
        squares = np.bincount(owner, np.square(norms, dtype=np.float64), len(self._layers))
        has_grad = np.bincount(owner, minlength=len(self._layers)) > 0
        return np.where(has_grad, np.sqrt(squares), np.nan)

    def _update_norms(self, device: torch.device) -> dict[str, torch.Tensor]:
        before, self._before_update = self._before_update, None
        after = [p.detach() for p in self._param_list]
        return {
            "weight_norm": _norms(before, device),
            "update_norm": _norms(torch._foreach_sub(after, before), device),
        }

    def _activation_rows(self, device: torch.device) -> dict[str, torch.Tensor]:
        nan = torch.full((4,), math.nan, dtype=torch.float64, device=device)
        rows = torch.stack([self._acts.get(layer.name, nan).to(device) for layer in self._layers])
        # one part per statistic, each with a value per layer
        self._acts.clear()
        return dict(zip(_ACT_FIELDS, rows.T, strict=True))

    def _count_nonfinite(self, norms: np.ndarray) -> np.ndarray:
        """NaN/Inf gradient entries per layer; only counted when a norm says there are some.

        A NaN norm also means "this layer got no gradient": counting over the gradients that
        exist tells the two apart.
        """
        counts = np.zeros(len(self._layers))
        for i in np.flatnonzero(~np.isfinite(norms)):
            grads = [p.grad for p in self._layers[i].params if p.grad is not None]
            counts[i] = sum(int((~torch.isfinite(g)).sum()) for g in grads)
        return counts

    # -- sampling and its cost ----------------------------------------------------------------

    def _adapt(self, started: float, measured: bool) -> None:
        """Widen the gradient interval when captures cost more than ``budget`` of a step."""
        self._cost.observe(started, time.perf_counter(), measured)
        if self.budget is None or self.step <= _WARMUP_CAPTURES:
            return
        needed = self._cost.capture_s / max(self.budget * self._cost.step_s, 1e-12)
        self.grad_every = max(1, min(_MAX_GRAD_EVERY, math.ceil(needed)))

    # -- forward hooks, attached only for sampled forward passes -------------------------------

    def _rearm(self, sampled_now: bool) -> None:
        if sampled_now:
            self._disarm()
        if self.act_every and self.step % self.act_every == 0:
            self._arm()

    def _arm(self) -> None:
        if self._hooks:
            return
        self._current = None
        for name, module in self._hook_sites():
            self._hooks.append(module.register_forward_hook(self._make_hook(name, module)))

    def _disarm(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    def _hook_sites(self) -> Iterator[tuple[str | None, nn.Module]]:
        """Layers (by name) and activation modules (None: they report for the layer before)."""
        by_module = {id(layer.module): layer.name for layer in self._all_layers}
        for module in self.model.modules():
            if id(module) in by_module:
                yield by_module[id(module)], module
            elif type(module) in _ACTIVATIONS:
                yield None, module

    def _make_hook(self, name: str | None, module: nn.Module) -> Any:
        saturation = _ACTIVATIONS.get(type(module))
        channels_first = isinstance(
            module, (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase)
        )

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if name is not None:
                self._current = name
                if not self._ordered and name not in self._ran:
                    self._ran.append(name)
            target = self._current
            out = _first_tensor(output)
            if target is not None and out is not None:
                # An activation right after a layer overwrites the layer's own output stats.
                self._acts[target] = _activation_stats(out, saturation, channels_first)

        return hook

    def _fix_order(self) -> None:
        """Order layers by first execution; layers that never ran keep registration order."""
        rank = {name: i for i, name in enumerate(self._ran)}
        big = len(rank)
        self._layers = sorted(self._all_layers, key=lambda layer: rank.get(layer.name, big))
        self._ordered = True
        self._param_list = [p for layer in self._layers for p in layer.params]
        self._owner = np.array([i for i, layer in enumerate(self._layers) for _ in layer.params])
        if self.layer_names != self._history.layers:
            self._history = History(self.layer_names, self._capacity)


def _loss_value(loss: Any) -> torch.Tensor:
    if isinstance(loss, torch.Tensor):
        return loss.detach().reshape(-1)[:1] if loss.numel() == 1 else loss.detach().mean()
    return torch.tensor([math.nan if loss is None else float(loss)])


def _unflatten(parts: dict[str, torch.Tensor], flat: np.ndarray) -> dict[str, np.ndarray]:
    """Cut the one host copy back into the named parts it was made of."""
    values, start = {}, 0
    for name, tensor in parts.items():
        values[name] = flat[start : start + tensor.numel()]
        start += tensor.numel()
    return values


class _CostMeter:
    """Running estimates of one capture's cost and of a plain training step, in seconds."""

    def __init__(self, smoothing: float = 0.1) -> None:
        self.smoothing = smoothing
        self.capture_s = 0.0
        self.step_s = 0.0
        self._left_at: float | None = None

    def observe(self, entered: float, left: float, captured: bool) -> None:
        if self._left_at is not None:
            self.step_s = self._mix(self.step_s, entered - self._left_at)
        if captured:
            self.capture_s = self._mix(self.capture_s, left - entered)
        self._left_at = left

    def _mix(self, old: float, new: float) -> float:
        return new if old == 0.0 else old + self.smoothing * (new - old)
