"""Train the tiny GPT for a few steps under a parallel layout; rank 0 writes the losses (torchrun entry).

Data parallelism takes the processes that --tp x --pp leave, so any combination runs.
"""
import argparse
import json

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F

from common import dist
from common.step import gradient_sync
from gpt3.model import GPT, GPTConfig
from gpt3.optim import clip_stage_grads
from gpt3.parallelize import (build_mesh, build_schedule, embedding_group, parallelize_stage, pipeline_stages,
                              sync_tied_embedding_grads)


def loss_fn(logits, targets):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--pp", type=int, default=1)
    parser.add_argument("--interleave", type=int, default=1, help="pipeline stages per rank")
    parser.add_argument("--microbatches", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8, help="global batch")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    denv = dist.read_dist_env()
    device = torch.device("cpu")
    dist.init_distributed(denv, device)
    mesh = build_mesh(device, denv.world_size, args.tp, args.pp)
    torch.manual_seed(0)  # the same initial weights and data on every rank
    model = GPT(GPTConfig.tiny())
    # counting sequences (each token is the previous + 1): learnable in a few steps
    starts = torch.randint(0, model.cfg.vocab_size, (args.steps, args.batch, 1))
    data = (starts + torch.arange(33)) % model.cfg.vocab_size
    pp_mesh, dp_mesh = mesh["pp"], mesh["dp"]
    if args.pp > 1:
        stages = pipeline_stages(model, pp_mesh.get_local_rank(), args.pp, args.interleave)
        for _, stage in stages:
            parallelize_stage(stage, mesh, pipelined=True)
        schedule = build_schedule(stages, pp_mesh, device, args.microbatches, loss_fn)
        modules = [m for _, m in stages]
        first, last = stages[0][0] == 0, stages[-1][0] == args.pp * args.interleave - 1
    else:
        modules = [parallelize_stage(model, mesh)]
    tied = embedding_group(mesh)
    params = [p for m in modules for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, foreach=False)
    dp, dp_rank = dp_mesh.size(), dp_mesh.get_local_rank()
    losses = []
    for step in range(args.steps):
        batch = data[step].chunk(dp)[dp_rank]  # data parallel ranks split the global batch
        inputs, targets = batch[:, :-1], batch[:, 1:]
        if args.pp > 1:
            micro = []
            schedule.step(*([inputs] if first else []), **({"target": targets, "losses": micro} if last else {}))
            loss = torch.stack(micro).mean() if last else torch.zeros(())
            sync_tied_embedding_grads(modules, tied)
        else:  # gradient accumulation over micro-batches, reduce-scattered once, on the last
            loss = torch.zeros(())
            for m, (x, y) in enumerate(zip(inputs.chunk(args.microbatches), targets.chunk(args.microbatches))):
                with gradient_sync(modules, enabled=m == args.microbatches - 1):
                    micro_loss = loss_fn(model(x), y) / args.microbatches
                    micro_loss.backward()
                loss += micro_loss.detach()
        clip_stage_grads(modules, 1.0, pp_mesh)
        optimizer.step()
        optimizer.zero_grad()
        total = loss.detach().clone()
        torch_dist.all_reduce(total)  # over all ranks: DP ranks average, only the last PP stage holds a loss
        losses.append(total.item() / (dp * mesh["tp"].size()))
    if denv.rank == 0:
        with open(args.out, "w") as f:
            json.dump(losses, f)
    torch_dist.destroy_process_group()


if __name__ == "__main__":
    main()
    dist.leave(0)  # gloo's threads can abort a finalizing interpreter (common.dist.exit_after)
