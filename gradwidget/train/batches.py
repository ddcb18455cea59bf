"""Turn what users pass as data into a reproducible stream of ``(x, y)`` batches.

Tensors are shuffled with a ``torch.Generator`` owned by the run, never the global RNG, so
two runs with the same seed see the same batches in the same order even while they train
side by side in two threads (and a model's dropout cannot shift the data order). An
iterable such as a ``DataLoader`` is consumed in its own order: give it a seeded
``generator=`` to make it reproducible too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..datasets import Dataset
from ..errors import DataError

__all__ = ["BatchSource", "as_source", "check_finite"]

# Inputs are a tensor, or named tensors (a Hugging Face model's input_ids, attention_mask...).
Inputs = torch.Tensor | dict[str, torch.Tensor]
Batch = tuple[Inputs, torch.Tensor]


@dataclass(frozen=True)
class BatchSource:
    """Training batches plus the optional test split.

    Attributes
    ----------
    train : tensor pair or iterable of batches
        ``(x, y)`` tensors to shuffle (``x`` may be a dict of named input tensors), or an
        iterable that yields ``(x, y)`` or dict batches.
    test : tensor pair or None
        Held-out ``(x, y)`` for ``test_accuracy``.
    """

    train: Batch | Iterable[Any]
    test: Batch | None = None

    @property
    def is_tensors(self) -> bool:
        """Whether the training data are in-memory tensors (shuffled by the run)."""
        return isinstance(self.train, tuple)

    def batches_per_epoch(self, batch_size: int) -> int | None:
        """Batches in one pass over the data; ``None`` for an iterable without ``len``."""
        if self.is_tensors:
            return max(1, _rows(self.train[0]) // batch_size)
        return len(self.train) if hasattr(self.train, "__len__") else None

    def batches(
        self, batch_size: int, generator: torch.Generator, epochs: int | None
    ) -> Iterator[Batch]:
        """Batches for ``epochs`` passes over the data, or without end when ``epochs`` is None.

        Tensors: a fresh permutation from ``generator`` each epoch, full batches only (a
        trailing batch of one would break BatchNorm). An iterable is re-read each epoch; a
        one-shot iterator simply ends after its first pass.
        """
        if self.is_tensors:
            return _shuffled(*self.train, batch_size, generator, epochs)
        return _reread(self.train, epochs)


def as_source(data: Any) -> BatchSource:
    """Read a :class:`Dataset`, an ``(X, y)`` pair of tensors or arrays, or batches.

    As a Hugging Face ``Trainer`` takes them, data may also be named columns (a dict of
    equal-length tensors, the targets under ``"labels"``) or an iterable of such dict batches.

    Raises
    ------
    DataError
        Empty data, ``X`` and ``y`` of different lengths, or something that is not data.
    """
    if isinstance(data, Dataset):
        test = (data.x_test, data.y_test) if data.has_test else None
        return BatchSource(_tensor_pair(data.x_train, data.y_train), test)
    if _is_array_pair(data):
        return BatchSource(_tensor_pair(*data))
    if isinstance(data, Mapping):
        return BatchSource(_tensor_pair(*_split_labels(data)))
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        return BatchSource(data)
    raise DataError(
        f"Cannot train on data of type {type(data).__name__}. Pass a gradwidget Dataset, "
        "an (X, y) pair of tensors or arrays, a dict of named tensors with 'labels', or an "
        "iterable of (x, y) or dict batches (a DataLoader)."
    )


def _split_labels(batch: Mapping) -> Batch:
    """Named tensors -> (the model's keyword inputs, the ``labels`` targets)."""
    if "labels" not in batch:
        raise DataError(
            f"A dict batch needs the targets under 'labels' (it has {sorted(batch)}), as a "
            "Hugging Face data collator adds them; for a language model, labels=input_ids."
        )
    inputs = {str(k): torch.as_tensor(v) for k, v in batch.items() if k != "labels"}
    return inputs, torch.as_tensor(batch["labels"])


def _unpack(batch: Any) -> Batch:
    """One ``(x, y)`` batch from an iterable, as tensors."""
    if isinstance(batch, Mapping):
        return _split_labels(batch)
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return torch.as_tensor(batch[0]), torch.as_tensor(batch[1])
    raise DataError(
        f"Each batch must be a pair (inputs, targets), but one was a {type(batch).__name__}"
        f"{f' of length {len(batch)}' if isinstance(batch, (tuple, list)) else ''}. "
        "Make the Dataset's __getitem__ (or the generator) return (x, y) or a dict of "
        "tensors with 'labels'."
    )


def check_finite(x: torch.Tensor, what: str) -> None:
    """Raise a DataError if a floating tensor holds NaN or Inf values."""
    if not x.is_floating_point():
        return
    bad = ~torch.isfinite(x)
    if bad.any():
        row = int(bad.reshape(len(x), -1).any(dim=1).nonzero()[0, 0]) if x.dim() else 0
        raise DataError(
            f"The {what} contain {int(bad.sum())} NaN or Inf values (the first in row {row}). "
            "Clean or impute them before training, e.g. with torch.nan_to_num(x) "
            "or by dropping those rows."
        )


def _rows(x: Inputs) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _take(x: Inputs, index: torch.Tensor) -> Inputs:
    return {k: v[index] for k, v in x.items()} if isinstance(x, dict) else x[index]


def _is_array_pair(data: Any) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(part, (torch.Tensor, np.ndarray)) for part in data)
    )


def _tensor_pair(x: Any, y: Any) -> Batch:
    columns = x if isinstance(x, dict) else {"X": torch.as_tensor(x)}
    y = torch.as_tensor(y)
    for name, column in columns.items():
        if column.dim() == 0 or len(column) == 0:
            raise DataError(
                f"The training data are empty: {name} has no rows. Pass at least one sample."
            )
        if y.dim() == 0 or len(column) != len(y):
            raise DataError(
                f"{name} has {len(column)} rows but y has {len(y) if y.dim() else 'no'} rows: "
                "each input needs exactly one target."
            )
        check_finite(column, "inputs")
    check_finite(y, "targets")
    return (x if isinstance(x, dict) else columns["X"]), y


def _shuffled(
    x: Inputs, y: torch.Tensor, batch_size: int, gen: torch.Generator, epochs: int | None
) -> Iterator[Batch]:
    rows = _rows(x)
    size = min(batch_size, rows)
    epoch = 0
    while epochs is None or epoch < epochs:
        order = torch.randperm(rows, generator=gen)
        for start in range(0, rows - size + 1, size):
            index = order[start : start + size]
            yield _take(x, index), y[index]
        epoch += 1


def _reread(data: Iterable[Any], epochs: int | None) -> Iterator[Batch]:
    epoch = 0
    while epochs is None or epoch < epochs:
        seen = False
        for batch in _blaming_the_data(data, epoch):
            seen = True
            yield _unpack(batch)
        if not seen:  # empty, or a one-shot iterator already used up
            return
        epoch += 1


def _blaming_the_data(data: Iterable[Any], epoch: int) -> Iterator[Any]:
    """Iterate ``data``; an exception it raises becomes a DataError that points at the data.

    Without this, a corrupt record deep in a Dataset surfaces as a training failure and the
    user looks for the bug in the model.
    """
    index = 1
    try:
        iterator = iter(data)
    except Exception as exc:
        raise _unreadable(index, epoch, exc) from exc
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            raise _unreadable(index, epoch, exc) from exc
        yield batch
        index += 1


def _unreadable(index: int, epoch: int, exc: Exception) -> DataError:
    where = f"batch {index}" + (f" of pass {epoch + 1}" if epoch else "")
    return DataError(
        f"Reading {where} from the data failed with {type(exc).__name__}: {exc}. The error "
        "comes from the data pipeline (the Dataset's __getitem__, a transform, or the "
        "DataLoader's collate), not from the model: fix or skip that record."
    )
