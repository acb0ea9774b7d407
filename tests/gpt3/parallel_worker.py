"""Train the tiny GPT for a few steps under a parallel layout; rank 0 writes the losses (torchrun entry)."""
import argparse
import json

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F

from common import dist
from gpt3.model import GPT, GPTConfig
from gpt3.optim import clip_grad_norm_
from gpt3.parallelize import build_mesh, parallelize


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4, help="global batch")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    denv = dist.read_dist_env()
    device = torch.device("cpu")
    dist.init_distributed(denv, device)
    mesh = build_mesh(device, denv.world_size, args.tp)
    torch.manual_seed(0)  # the same initial weights and data on every rank
    model = GPT(GPTConfig.tiny())
    # counting sequences (each token is the previous + 1): learnable in a few steps
    starts = torch.randint(0, model.cfg.vocab_size, (args.steps, args.batch, 1))
    data = (starts + torch.arange(33)) % model.cfg.vocab_size
    wrapped = parallelize(model, mesh, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1,
                                  foreach=False)
    dp, dp_rank = mesh["dp"].size(), mesh["dp"].get_local_rank()
    losses = []
    for step in range(args.steps):
        batch = data[step].chunk(dp)[dp_rank]  # data parallel ranks split the global batch
        logits = wrapped(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        loss.backward()
        clip_grad_norm_(list(model.parameters()), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        mean = loss.detach().clone()
        torch_dist.all_reduce(mean, group=mesh["dp"].get_group())
        losses.append(mean.item() / dp)
    if denv.rank == 0:
        with open(args.out, "w") as f:
            json.dump(losses, f)
    torch_dist.destroy_process_group()


if __name__ == "__main__":
    main()
