"""2-process gloo training jobs for the distributed tests (spawned children import this module).

Each job trains a small MLP on every rank with ``gw.Recorder(model, log_dir=...)`` (every rank
passes the same ``log_dir``, as under ``torchrun``) and saves torch's own numbers beside the
log: per-layer norms of the full gradients (FSDP2: ``full_tensor()``, which is what FSDP
actually produced, summed or averaged), full weights before and after each sampled step.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import gradwidget as gw
from gradwidget.record.distributed import local, unwrap

STEPS = 24
ACT_EVERY = 4
MODES = ("ddp", "fsdp", "hsdp")


def model() -> nn.Sequential:
    """Uneven widths, so that shards of one layer differ in size between the ranks."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 7), nn.Sigmoid(), nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 3)
    )  # fmt: skip


def run(rank: int, folder: str, port: int, step_s: float) -> None:
    """One rank of a job: a DDP run into ``folder/ddp``, then FSDP2 into ``folder/fsdp`` and
    HSDP into ``folder/hsdp`` (one spawn for all: starting processes costs more than training);
    last, what a recorder says to parameters sharded over two mesh dimensions."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        for mode in MODES:  # only the DDP run is followed live: only it needs to take time
            _train(rank, mode, Path(folder) / mode, step_s if mode == "ddp" else 0.0)
        if rank == 0:
            (Path(folder) / "two_dims.txt").write_text(_two_dims())
        else:
            _two_dims()
        torch.distributed.barrier()  # neither rank leaves while the other still talks to it
    finally:
        torch.distributed.destroy_process_group()


def _train(rank: int, mode: str, folder: Path, step_s: float) -> None:
    net = _wrap(model(), mode)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    rec = gw.Recorder(net, log_dir=folder / "log", act_every=ACT_EVERY, budget=None)
    inner = unwrap(net)
    generator = torch.Generator().manual_seed(rank)  # each rank its own batch
    grads, weights, losses, costs = [], [], [], []
    for _ in range(STEPS):
        x = torch.randn(16, 6, generator=generator)
        y = torch.randint(0, 3, (16,), generator=generator)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        grads.append(_grad_norms(inner, rec.layers))
        weights.append(_weights(inner, rec.layers))
        losses.append(float(loss.detach()))
        started = time.perf_counter()
        rec.capture(loss)
        costs.append(time.perf_counter() - started)
        opt.step()
        time.sleep(step_s)
    weights.append(_weights(inner, rec.layers))
    rec.close()
    if rank == 0:
        before, after = weights[:-1], weights[1:]
        np.savez(
            folder / "oracle.npz",
            grad_norm=np.array(grads),
            loss=np.array(losses),
            weight_norm=np.array([[np.linalg.norm(w) for w in ws] for ws in before]),
            update_norm=np.array(
                [
                    [np.linalg.norm(a - b) for a, b in zip(wa, wb, strict=True)]
                    for wa, wb in zip(after, before, strict=True)
                ]
            ),
        )
    info = {"layers": list(rec.layers), "recorded": len(rec.history), "capture_s": costs}
    info["poisoned"] = _poisoned(net, rank)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"rank{rank}.json").write_text(json.dumps(info))


def _poisoned(net: nn.Module, rank: int) -> list[float]:
    """The non-finite counts recorded for one more step in which rank 1 alone puts a NaN in
    its own gradient of the first weight (under FSDP2, its shard: rank 0 sees none)."""
    rec = gw.Recorder(net, act_every=None, budget=None)
    net.zero_grad()
    net(torch.randn(4, 6)).sum().backward()
    if rank == 1:
        with torch.no_grad():
            local(next(unwrap(net).parameters()).grad)[0, 0] = float("nan")
    rec.capture()
    counts = rec.history.nonfinite
    rec.close()
    return counts[-1].tolist() if len(counts) else []


def _two_dims() -> str:
    """The error for a weight sharded over both dimensions of a 1 x 2 mesh (as tensor
    parallelism on top of FSDP would shard it)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (1, 2))
    weight = nn.Parameter(distribute_tensor(torch.randn(4, 4), mesh, [Shard(0), Shard(1)]))
    try:
        gw.Recorder(nn.ParameterList([weight]))
    except gw.GradWidgetError as why:
        return str(why)
    return "no error"


def _wrap(net: nn.Module, mode: str) -> nn.Module:
    if mode == "ddp":
        return nn.parallel.DistributedDataParallel(net)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    # "cpu", not the default device (pytorch#132471). HSDP: 1 replica x 2 shards, so the
    # recorder must sum over the mesh's second dimension.
    if mode == "fsdp":
        mesh = init_device_mesh("cpu", (2,))
    else:
        mesh = init_device_mesh("cpu", (1, 2), mesh_dim_names=("replicate", "shard"))
    for layer in net:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    return fully_shard(net, mesh=mesh)


def _full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor: a collective for a DTensor (every rank calls this alike)."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _grad_norms(net: nn.Module, layers: tuple[str, ...]) -> list[float]:
    """L2 norm of each layer's full gradients, in float64."""
    modules = dict(net.named_modules())
    norms = []
    for name in layers:
        params = modules[name].parameters(recurse=False)
        norms.append(sum(float(_full(p.grad).double().square().sum()) for p in params) ** 0.5)
    return norms


def _weights(net: nn.Module, layers: tuple[str, ...]) -> list[np.ndarray]:
    """Each layer's full weights, flattened float64 copies."""
    modules = dict(net.named_modules())
    return [
        np.concatenate(
            [
                _full(p.detach()).double().reshape(-1).numpy()
                for p in modules[n].parameters(recurse=False)
            ]
        )
        for n in layers
    ]
