"""Train on several processes with torchrun and follow the job from a notebook or a terminal.

    torchrun --nproc_per_node 2 examples/train_ddp.py --log-dir runs/exp1           # DDP
    torchrun --nproc_per_node 2 examples/train_ddp.py --log-dir runs/exp2 --fsdp    # FSDP2

Meanwhile, in a notebook: ``gw.GradPanel.follow("runs")`` (both runs side by side), or in a
terminal: ``python -m gradwidget follow runs/exp1``. CPU processes talk over gloo; with one GPU
per process, NCCL. Every rank builds the same Recorder with the same ``log_dir``: under DDP only
rank 0 records and writes; under FSDP2 every rank joins one all_reduce per capture and rank 0
writes the global per-layer norms.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn

import gradwidget as gw


def main() -> None:
    args = _arguments()
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    torch.manual_seed(0)  # the same initial weights on every rank
    model = _parallel(gw.models.deep_mlp(depth=10, width=64, activation="sigmoid"), args, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    # After fully_shard / DDP: the recorder must see the parameters that will be trained.
    recorder = gw.Recorder(model, log_dir=args.log_dir)
    data = gw.datasets.digits()
    x, y = data.x_train[rank::world].to(device), data.y_train[rank::world].to(device)  # a shard
    generator = torch.Generator().manual_seed(rank)
    for step in range(args.steps):
        batch = torch.randint(0, len(x), (args.batch_size,), generator=generator)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        recorder.capture(loss)  # after backward, before the optimizer step
        optimizer.step()
        if rank == 0 and step % 100 == 0:
            print(f"step {step}: loss {loss.item():.3f}", flush=True)
    recorder.close()  # marks the log finished
    dist.barrier()  # neither rank leaves while the other still talks to it
    dist.destroy_process_group()


def _parallel(model: nn.Module, args: argparse.Namespace, device: torch.device) -> nn.Module:
    model = model.to(device)
    if not args.fsdp:
        return nn.parallel.DistributedDataParallel(model)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    # The mesh's device type must match the parameters' ("cpu" here, pytorch#132471).
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-dir", default="runs/exp1", help="the run's log folder (new)")
    parser.add_argument("--fsdp", action="store_true", help="FSDP2 fully_shard instead of DDP")
    parser.add_argument("--steps", type=int, default=int(os.environ.get("GW_STEPS", 600)))
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--lr", type=float, default=0.1)
    return parser.parse_args()


if __name__ == "__main__":
    main()
