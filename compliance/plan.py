"""Predict a config's time to train at each node count, from a per-GPU throughput, the RCPs and a network model.

    python3 -m compliance.plan resnet50/config_DGXH100_8x8x50x1.sh --throughput 7009 [--nodes 8 64 96]

prints, per node count: GPUs, global batch, the RCP's mean epochs (or samples) to converge at that batch,
the predicted minutes from run_start to run_stop, and the shares of compute, fixed per-step cost, gradient
all-reduce and evaluation, naming the term that dominates. Benchmarks modelled: resnet50, bert, dlrm_dcnv2,
on DGX H100-class nodes (config_DGXH100_* and config_HGXH100_*). `plan()` is the same as a function.

Inputs
- Throughput T (samples/s per GPU) measured on ONE DGX H100 (8 GPUs) at the benchmark's 1-node config
  (`<bench>/config_DGXH100_1x8x*.sh`, per-GPU batch b1): `--throughput`, else the "with loader" column of
  `docs/perf/<bench>_h100.md` at that batch. No such table exists yet (docs/perf holds CPU tables), so without
  --throughput the planner says so and exits 2. Samples are the RCP's: images, sequences, Criteo rows.
- Samples to train: the RCP mean at the global batch (mlperf_logging's training_3.0.0 `rcps_<bench>.json`),
  computed as `rcp_checker.py` does for the package checker's pruned pass: olympic mean per RCP (minus the
  fastest and slowest run), RCPs pruned as `_prune_rcps` does, linear interpolation between the two RCPs
  around the batch (`_create_interp_rcp`). Outside every RCP the nearest RCP is used and a note says so.
- Evaluations: the config's own schedule (its dataclass from `<bench>/config.py`, loaded by
  `common.config.load_configs`, turned into blocks by the `common.schedule` constructor its train.py uses);
  the run evaluates up to the first scheduled evaluation at or after the RCP amount.

Model, one set of parameters for every benchmark and node count (`ScalingModel`):
    step time  = b x c + t0 + (1 - overlap) x allreduce(P x 2 bytes, N)     (b = samples per GPU per step)
    c          = 1/T - (t0 + (1 - overlap) x allreduce(P x 2 bytes, 1)) / b1   (T was measured at b1, 1 node)
    allreduce  = hierarchical ring: within a node 2(g-1)/g x bytes / NVLink + 2(g-1) NVLink hops, across N
                 nodes (one NIC per GPU) 2(N-1)/N x bytes / (g x IB) + 2(N-1) IB hops
    time       = steps x step time + evaluations x eval_samples / (eval rate x GPUs)
- NVLink 450 GB/s per GPU per direction ("NVLINK Gen4 900 GB/s", both directions) and IB 50 GB/s per GPU
  ("Compute: 8x ConnectX-7 IB NDR 400Gb/s"): NVIDIA/systems/dgxh100_n8_ngc23.04_mxnet.json in
  mlcommons/training_results_v3.0.
- Hop latencies 3.4 us (NVLink) and 9.6 us (network): NCCL's own ring/Simple model, `hwLat` in
  NVIDIA/nccl src/graph/tuning.cc (commit 01afd20a); its 8.4 us base latency per call is left out.
- Gradients are all-reduced in 16-bit (2 bytes per parameter). P = data-parallel parameters:
  ResNet-50 25,557,032; BERT-large 336,232,258; DLRM-DCNv2 16,044,545 (its MLPs and cross layers:
  the embeddings are model-parallel, and their all-to-all is not modelled); tests check these against the
  models in this repo.
- overlap 0: NVIDIA's multi-node ResNet configs say "Default is no NCCL and BWD overlap"
  (NVIDIA/benchmarks/resnet/implementations/mxnet/config_DGXH100_multi_8x8x50.sh).
- t0 = 3 ms per optimizer step: the cost of a step that does not shrink with its batch (launches,
  optimizer update, host synchronisation). It is the one parameter without a first-principles source: it
  was set after seeing that NVIDIA's 8-96-node ResNet-50 steps take 3.8-4.1 ms longer than their compute at
  the 1-node rate (1.5-3.5 ms beyond the all-reduce above), and its 8- and 16-node DLRM steps 3.0 and 2.9 ms
  for 1.2 and 0.6 ms of compute (docs/planner.md).
- Evaluation rate per GPU: from NVIDIA's 1-node v3.0 logs, eval_samples over the mean eval_start..eval_stop
  time on 8 GPUs (ResNet-50 0.4365 s for 50,000 images, DLRM 1.983 s for 89,137,319 rows; results
  NVIDIA/results/dgxh100_ngc23.04_mxnet/resnet and .../dgxh100_ngc23.04_merlin_hugectr/dlrm_dcnv2); BERT's
  logs have no eval_start/eval_stop, so 3 x T (a forward pass is a third of a training step's FLOPs).

Batch at other node counts (--nodes): resnet50 and bert keep the config's per-GPU batch (the global batch
grows with the nodes, as NVIDIA's configs do); dlrm_dcnv2's BATCHSIZE is the global batch, kept as it is
(NVIDIA runs 135,168 on 8 and 16 nodes), so the per-GPU batch shrinks.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bert.config import BertRunConfig
from common import schedule
from common.config import ConfigError, RuntimeConfig, SystemConfig, load_configs
from compliance.check import RULESET
from dlrm_dcnv2.config import RULES as DLRM_RULES
from dlrm_dcnv2.config import DlrmRunConfig
from resnet50.config import RULES as RESNET_RULES
from resnet50.config import ResNetConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
PERF_DIR = REPO_ROOT / "docs" / "perf"
SYSTEMS = ("DGXH100", "HGXH100")  # 8x H100 SXM, NVLink 4 + NVSwitch, 8x NDR 400 Gb/s per node
REFERENCE_SYSTEM = "DGXH100"  # T is measured on one node of it, at its 1-node config
IMAGENET_TRAIN_IMAGES = 1_281_167  # logged as train_samples by NVIDIA's v3.0 ResNet-50 runs
NOT_MODELLED = ("gpt3", "maskrcnn", "retinanet", "rnnt", "unet3d")


class PlanError(ValueError):
    """The config, the throughput or the node counts cannot be planned."""


@dataclass(frozen=True)
class ScalingModel:
    """Step-cost and network parameters (module docstring: their sources)."""

    nvlink_bytes_per_s: float = 450e9  # per GPU, each direction
    ib_bytes_per_s: float = 50e9  # per GPU: one NDR 400 Gb/s NIC each
    nvlink_hop_s: float = 3.4e-6
    ib_hop_s: float = 9.6e-6
    grad_bytes_per_param: int = 2
    overlap: float = 0.0  # fraction of the all-reduce hidden behind the backward pass
    step_overhead_s: float = 3e-3  # t0

    def allreduce_s(self, params: int, nodes: int, gpus_per_node: int) -> float:
        """Hierarchical ring all-reduce of the gradients: NVLink inside a node, then InfiniBand across nodes."""
        size, g, n = params * self.grad_bytes_per_param, gpus_per_node, nodes
        intra = 2 * (g - 1) / g * size / self.nvlink_bytes_per_s + 2 * (g - 1) * self.nvlink_hop_s
        inter = 2 * (n - 1) / n * size / (g * self.ib_bytes_per_s) + 2 * (n - 1) * self.ib_hop_s
        return intra + inter

    def exposed_allreduce_s(self, params: int, nodes: int, gpus_per_node: int) -> float:
        return (1 - self.overlap) * self.allreduce_s(params, nodes, gpus_per_node)


MODEL = ScalingModel()


@dataclass(frozen=True)
class Shape:
    """A config's run at one node count."""

    global_batch: int  # samples per optimizer step
    table_batch: int  # BATCHSIZE per process, as docs/perf tables list it (bert: rows)
    eval_amounts: tuple[float, ...]  # RCP-unit amounts at which the schedule evaluates


def resnet_shape(cfg: ResNetConfig, gpus: int) -> Shape:
    global_batch = cfg.batch_size * gpus
    blocks = schedule.every_n_epochs(cfg.num_epochs, max(1, IMAGENET_TRAIN_IMAGES // global_batch),
                                     RESNET_RULES.eval_period_epochs, cfg.eval_offset)
    return Shape(global_batch, cfg.batch_size, tuple(b.epoch_num for b in blocks if b.evaluate))


def bert_shape(cfg: BertRunConfig, gpus: int) -> Shape:
    global_batch = cfg.global_batch(gpus)
    try:
        every = cfg.eval_every(gpus)
    except ValueError as err:
        raise PlanError(f"at {gpus} GPUs: {err}") from None
    blocks = schedule.every_n_samples(every, cfg.max_samples, global_batch, cfg.max_steps)
    return Shape(global_batch, cfg.batch_size, tuple(b.epoch_num for b in blocks))


def dlrm_shape(cfg: DlrmRunConfig, gpus: int) -> Shape:
    try:
        local = cfg.local_batch(gpus)
        blocks = schedule.fractions_of_epoch(DLRM_RULES.evals_per_epoch, DLRM_RULES.train_samples // cfg.global_batch,
                                             cfg.global_batch, DLRM_RULES.train_samples)
    except ValueError as err:
        raise PlanError(f"at {gpus} GPUs: {err}") from None
    return Shape(cfg.global_batch, local, tuple(b.epoch_num for b in blocks))


@dataclass(frozen=True)
class BenchmarkModel:
    rcp_benchmark: str  # rcps_<name>.json
    unit: str  # the RCP's unit
    samples_per_unit: int
    params: int  # data-parallel (all-reduced) parameters
    eval_samples: int
    eval_rate: float | None  # samples/s per GPU of an evaluation; None: 3 x the training throughput
    run_config: type  # the dataclass the benchmark's train.py hands to common.session.Session
    shape: Callable[..., Shape]


BENCHMARKS = {
    "resnet50": BenchmarkModel("resnet", "epochs", IMAGENET_TRAIN_IMAGES, 25_557_032, 50_000,
                               50_000 / (0.4365 * 8), ResNetConfig, resnet_shape),
    "bert": BenchmarkModel("bert", "samples", 1, 336_232_258, 10_000, None, BertRunConfig, bert_shape),
    "dlrm_dcnv2": BenchmarkModel("dlrm_dcnv2", "epochs", DLRM_RULES.train_samples, 16_044_545,
                                 DLRM_RULES.eval_samples, DLRM_RULES.eval_samples / (1.983 * 8), DlrmRunConfig,
                                 dlrm_shape),
}


@dataclass(frozen=True)
class RcpPoint:
    batch: int
    mean: float  # olympic mean of the reference runs' epochs (or samples) to converge


def rcp_points(benchmark: str) -> list[RcpPoint]:
    """The pruned RCPs of the 3.0.0 ruleset, by batch size (rcp_checker's `pruned_rcps` pass)."""
    import mlperf_logging

    path = Path(mlperf_logging.__path__[0]) / "rcp_checker" / f"training_{RULESET}" / f"rcps_{benchmark}.json"
    trimmed = 4 if benchmark == "unet3d" else 1
    points = []
    for record in json.loads(path.read_text()).values():
        runs = sorted(record["Epochs to converge"])[trimmed:-trimmed]
        points.append(RcpPoint(record["BS"], sum(runs) / len(runs)))
    points.sort(key=lambda p: p.batch)
    fastest = min(points, key=lambda p: p.mean)  # below its batch, no RCP may converge faster than it
    points = [p for p in points if p.batch >= fastest.batch]
    i = 1
    while i < len(points) - 1:  # drop a point that converges slower than its neighbours' interpolation
        if points[i].mean > interpolate(points[i - 1], points[i + 1], points[i].batch):
            del points[i]  # and check the point that took its place
        else:
            i += 1
    return points


def interpolate(low: RcpPoint, high: RcpPoint, batch: int) -> float:
    return low.mean + (high.mean - low.mean) * (batch - low.batch) / (high.batch - low.batch)


def rcp_mean(points: list[RcpPoint], batch: int) -> tuple[float, str]:
    """The RCP mean at `batch` and how it was found."""
    exact = [p for p in points if p.batch == batch]
    if exact:
        return exact[0].mean, f"RCP at batch {batch}"
    below = [p for p in points if p.batch < batch]
    above = [p for p in points if p.batch > batch]
    if below and above:
        return interpolate(below[-1], above[0], batch), f"RCPs {below[-1].batch} and {above[0].batch} interpolated"
    if above:
        return above[0].mean, (f"batch {batch} is below every RCP: the smallest ({above[0].batch}) is used, "
                               "as rcp_checker does")
    return below[-1].mean, (f"batch {batch} is above every RCP (largest {below[-1].batch}): there is no RCP for it; "
                            "the largest RCP's mean is used, likely an underestimate")


def perf_table_throughput(bench: str, batch: int, perf_dir: Path = PERF_DIR) -> float:
    """Samples/s per GPU, "with loader", at `batch` per GPU from docs/perf/<bench>_h100.md."""
    table = perf_dir / f"{bench}_h100.md"
    if not table.is_file():
        shown = table.relative_to(REPO_ROOT) if table.is_relative_to(REPO_ROOT) else table
        raise PlanError(f"no measured H100 throughput for {bench}: {shown} does not exist (docs/perf holds CPU "
                        f"tables); pass --throughput S, samples/s per GPU measured on one DGX H100 at "
                        f"BATCHSIZE={batch} (the 1-node config_{REFERENCE_SYSTEM}_1x8x*.sh)")
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in table.read_text().splitlines() if line.startswith("|")]
    header = rows[0]
    column = next((i for i, name in enumerate(header) if name.endswith("with loader") and "/s" in name), None)
    if column is None or "batch" not in header:
        raise PlanError(f"{table}: no 'batch' and '.../s with loader' columns")
    for row in rows[2:]:
        leading = re.match(r"\d+", row[header.index("batch")])
        if not row[0].startswith("debug") and leading and int(leading.group()) == batch:
            return float(row[column].replace(",", ""))
    raise PlanError(f"{table}: no row of the full model at batch {batch}; pass --throughput")


@dataclass(frozen=True)
class Row:
    nodes: int
    gpus: int
    global_batch: int
    throughput: float  # samples/s per GPU on one node, the input
    amount: float  # the RCP mean at this batch, in `unit`
    unit: str
    evaluations: int
    compute_s: float
    overhead_s: float
    allreduce_s: float
    eval_s: float
    notes: tuple[str, ...]

    @property
    def minutes(self) -> float:
        return (self.compute_s + self.overhead_s + self.allreduce_s + self.eval_s) / 60

    def shares(self) -> dict[str, float]:
        total = self.minutes * 60
        return {"compute": self.compute_s / total, "step overhead": self.overhead_s / total,
                "all-reduce": self.allreduce_s / total, "eval": self.eval_s / total}

    @property
    def dominant(self) -> str:
        shares = self.shares()
        return max(shares, key=shares.get)


def benchmark_of(config_path: Path) -> tuple[str, BenchmarkModel]:
    bench = config_path.resolve().parent.name
    if bench in BENCHMARKS:
        return bench, BENCHMARKS[bench]
    if bench in NOT_MODELLED:
        raise PlanError(f"{bench} is not modelled yet (modelled: {', '.join(BENCHMARKS)})")
    raise PlanError(f"unknown benchmark folder {bench!r} of {config_path} (modelled: {', '.join(BENCHMARKS)})")


def load(config_path: Path, spec: BenchmarkModel):
    """(SystemConfig, run config) of a config file as written (the environment does not override it)."""
    try:
        system, _, cfg = load_configs(config_path, SystemConfig, RuntimeConfig, spec.run_config, environ={})
    except ConfigError as err:
        raise PlanError(str(err)) from None
    return system, cfg


def reference_config(config_path: Path) -> Path:
    found = sorted(config_path.resolve().parent.glob(f"config_{REFERENCE_SYSTEM}_1x*.sh"))
    if len(found) != 1:
        raise PlanError(f"expected one 1-node config_{REFERENCE_SYSTEM}_1x*.sh beside {config_path}, "
                        f"found {len(found)}")
    return found[0]


def plan(config_path, throughput: float | None = None, nodes=None, *, model: ScalingModel = MODEL,
         perf_dir: Path = PERF_DIR) -> list[Row]:
    """One Row per node count (default: the config's own DGXNNODES); raises PlanError naming the problem."""
    config_path = Path(config_path)
    if not config_path.is_file():
        raise PlanError(f"config file {config_path} does not exist")
    bench, spec = benchmark_of(config_path)
    system, cfg = load(config_path, spec)
    if system.system.split("_")[0] not in SYSTEMS:
        raise PlanError(f"{config_path.name}: the model describes DGX H100-class nodes ({', '.join(SYSTEMS)}), "
                        f"not {system.system}")
    ref_path = reference_config(config_path)
    ref_system, ref_cfg = load(ref_path, spec)
    ref_gpus = ref_system.nodes * ref_system.gpus_per_node
    ref_shape = spec.shape(ref_cfg, ref_gpus)
    if throughput is None:
        throughput = perf_table_throughput(bench, ref_shape.table_batch, perf_dir)
    if not throughput > 0:
        raise PlanError(f"throughput must be positive samples/s per GPU, got {throughput}")
    ref_batch = ref_shape.global_batch / ref_gpus
    g = system.gpus_per_node
    fixed = model.step_overhead_s + model.exposed_allreduce_s(spec.params, 1, ref_system.gpus_per_node)
    per_sample_s = 1 / throughput - fixed / ref_batch
    if per_sample_s <= 0:
        raise PlanError(f"{throughput:g} samples/s per GPU at batch {ref_batch:g} leaves no time for compute after "
                        f"the model's fixed {fixed * 1e3:.2f} ms per step")
    eval_rate = spec.eval_rate or 3 * throughput
    points = rcp_points(spec.rcp_benchmark)
    rows = []
    for n in nodes or [system.nodes]:
        if n < 1:
            raise PlanError(f"node counts must be positive, got {n}")
        shape = spec.shape(cfg, n * g)
        if not shape.eval_amounts:
            raise PlanError(f"{config_path.name} at {n} nodes: its schedule holds no evaluation")
        amount, rcp_note = rcp_mean(points, shape.global_batch)
        notes = [rcp_note]
        evaluations = next((k + 1 for k, at in enumerate(shape.eval_amounts) if at >= amount), None)
        if evaluations is None:
            evaluations = len(shape.eval_amounts)
            notes.append(f"the config's last evaluation ({shape.eval_amounts[-1]:g} {spec.unit}) comes before the RCP "
                         f"mean ({amount:.4g}): runs converging later stop unconverged; evaluations counted up to it")
        steps = amount * spec.samples_per_unit / shape.global_batch
        rows.append(Row(
            nodes=n, gpus=n * g, global_batch=shape.global_batch, throughput=throughput, amount=amount, unit=spec.unit,
            evaluations=evaluations,
            compute_s=steps * shape.global_batch / (n * g) * per_sample_s,
            overhead_s=steps * model.step_overhead_s,
            allreduce_s=steps * model.exposed_allreduce_s(spec.params, n, g),
            eval_s=evaluations * spec.eval_samples / (eval_rate * n * g),
            notes=tuple(notes)))
    return rows


def format_rows(rows: list[Row]) -> str:
    lines = [f"| nodes | GPUs | global batch | RCP {rows[0].unit} | evals | minutes | compute | step overhead "
             "| all-reduce | eval | dominant |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        amount = f"{row.amount:,.0f}" if row.amount >= 1000 else f"{row.amount:.4g}"
        shares = " | ".join(f"{share:.0%}" for share in row.shares().values())
        lines.append(f"| {row.nodes} | {row.gpus} | {row.global_batch:,} | {amount} | {row.evaluations} "
                     f"| {row.minutes:.3f} | {shares} | {row.dominant} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="<bench>/config_<SYSTEM>_<nodes>x<gpus>x....sh")
    parser.add_argument("--throughput", type=float, default=None,
                        help="samples/s per GPU on one DGX H100 at the 1-node config (default: docs/perf table)")
    parser.add_argument("--nodes", type=int, nargs="+", default=None,
                        help="node counts to plan (default: the config's DGXNNODES)")
    args = parser.parse_args(argv)
    try:
        rows = plan(args.config, args.throughput, args.nodes)
    except PlanError as err:
        print(f"compliance.plan: {err}", file=sys.stderr)
        return 2
    source = "--throughput" if args.throughput is not None else "docs/perf"
    print(f"{args.config}: {rows[0].throughput:,.6g} samples/s per GPU on one node ({source}); model: "
          + ", ".join(f"{name} {value:g}" for name, value in dataclasses.asdict(MODEL).items()))
    print(format_rows(rows))
    for row in rows:
        share = row.shares()[row.dominant]
        print(f"{row.nodes} nodes: {row.minutes:.3f} min, {row.dominant} dominates ({share:.0%}); "
              + "; ".join(row.notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
