"""``python -m benchmarks.update_ratio``: the sampled update ratio against the exact one.

The recorder estimates each layer's ``||Δθ|| / ||θ||`` from a fixed sample of each tensor
(``gradwidget.record._layers.UpdateTracker``). Here the exact ratio comes from a full copy of
the weights taken before each optimizer step, on GPT-2-like models with SGD and AdamW; printed:
the median, 90th percentile and largest relative error over every layer of steps 3 to 5, and
the bytes the tracker holds against the parameter bytes.
"""

from __future__ import annotations

import json

import numpy as np
import torch

__all__ = ["errors"]

SIZES = {  # blocks, width, vocabulary; the last is the 10M row of benchmarks.memory
    "gpt2-4x256": (4, 256, 2000),
    "gpt2-6x512": (6, 512, 8000),
    "gpt2-6x256": (6, 256, 16384),
}


def errors(size: str, optimizer: str) -> dict:
    """Relative errors of one model and optimizer, as a JSON-ready row."""
    import transformers

    from gradwidget.record.recorder import Recorder

    torch.manual_seed(0)
    blocks, width, vocab = SIZES[size]
    config = transformers.GPT2Config(
        n_layer=blocks, n_embd=width, n_head=4, vocab_size=vocab, n_positions=64
    )
    model = transformers.GPT2LMHeadModel(config)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, 1e-3) if optimizer == "adamw" else torch.optim.SGD(params, 0.05)
    modules, exact = dict(model.named_modules()), {}
    with Recorder(model, act_every=1, budget=None) as rec:
        for step in range(7):
            x = torch.randint(0, vocab, (4, 32))
            loss = model(x, labels=x).loss
            opt.zero_grad()
            loss.backward()
            owned = {n: list(modules[n].parameters(recurse=False)) for n in rec.layers}
            before = {n: [p.detach().clone() for p in ps] for n, ps in owned.items()}
            rec.capture(loss)
            opt.step()
            if 3 <= step < 6:
                exact[step] = np.array([_ratio(owned[n], before[n]) for n in rec.layers])
        series, held = rec.history.series("update_ratio"), rec._updates.nbytes
    pairs = zip(series.steps, series.last, strict=True)
    rel = np.abs(np.concatenate([row / exact[s] - 1 for s, row in pairs if s in exact]))
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    return {
        "model": size,
        "optimizer": optimizer,
        "params_m": round(sum(p.numel() for p in params) / 1e6, 1),
        "median": round(float(np.median(rel)), 4),
        "p90": round(float(np.quantile(rel, 0.9)), 4),
        "max": round(float(rel.max()), 4),
        "tracker_over_params": round(held / param_bytes, 4),
    }


def _ratio(params: list[torch.Tensor], before: list[torch.Tensor]) -> float:
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(params, before, strict=True)])
    weight = torch.cat([b.flatten() for b in before])
    return (moved.double().norm() / weight.double().norm()).item()


if __name__ == "__main__":
    torch.set_num_threads(1)
    rows = [errors(size, opt) for size in SIZES for opt in ("sgd", "adamw")]
    print(json.dumps(rows, indent=1))
