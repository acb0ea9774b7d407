"""compliance.plan against NVIDIA's published v3.0 DGX H100 times, from the 1-node throughput alone.

Every number below comes from mlcommons/training_results_v3.0 (`NVIDIA/results/<folder>/<benchmark>/result_*.txt`):

- published minutes: the olympic mean of the successful runs' run_start..run_stop (drop the fastest and the
  slowest; FACTS.md section 8), without the summarizer's RCP normalisation;
- 1-node throughput (samples/s per GPU): over the successful runs of the 1-node result, the samples trained
  over the seconds from run_start to run_stop minus every eval_start..eval_stop interval, over 8 GPUs;
  samples = the last eval_accuracy's epoch_num x 1,281,167 images (resnet), the logged train_samples (bert;
  its logs have no eval_start/eval_stop, so its seconds include evaluation), the last eval_accuracy's
  epoch_num (fraction of the epoch) x 4,195,197,692 rows (dlrm_dcnv2).

`test_constants_match_the_published_logs` recomputes them all where the results repository is on disk.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from compliance.check import MLLOG_PREFIX
from compliance.plan import BENCHMARKS, IMAGENET_TRAIN_IMAGES, MODEL, format_rows, main, plan, rcp_mean, rcp_points
from dlrm_dcnv2.config import RULES as DLRM_RULES
from tests.conftest import REPO

TOLERANCE = 0.25
# samples/s per GPU on one DGX H100, from these 1-node results (module docstring: how)
THROUGHPUT = {
    "resnet50": (6924.59, "dgxh100_ngc23.04_mxnet/resnet"),  # 4 successful runs of 5 (result_3 aborted)
    "bert": (970.931, "dgxh100_ngc23.04_pytorch/bert"),  # 10 runs
    "dlrm_dcnv2": (1_810_588, "dgxh100_ngc23.04_merlin_hugectr/dlrm_dcnv2"),  # 10 runs
}
# (benchmark folder here, shipped config, published minutes, NVIDIA result folder)
PUBLISHED = [
    ("resnet50", "config_DGXH100_8x8x50x1.sh", 2.663, "dgxh100_n8_ngc23.04_mxnet/resnet"),
    ("resnet50", "config_DGXH100_64x8x40x1.sh", 0.498, "dgxh100_n64_ngc23.04_mxnet/resnet"),
    ("resnet50", "config_DGXH100_96x8x42x1.sh", 0.369, "dgxh100_n96_ngc23.04_mxnet/resnet"),
    ("bert", "config_DGXH100_8x8x72x1.sh", 0.885, "dgxh100_n8_ngc23.04_pytorch/bert"),
    ("bert", "config_DGXH100_64x8x3x1_pack.sh", 0.342, "dgxh100_n64_ngc23.04_pytorch/bert"),
    ("bert", "config_DGXH100_96x8x3x1_pack.sh", 0.253, "dgxh100_n96_ngc23.04_pytorch/bert"),
    ("dlrm_dcnv2", "config_DGXH100_8x8x2112.sh", 1.760, "dgxh100_n8_ngc23.04_merlin_hugectr/dlrm_dcnv2"),
    ("dlrm_dcnv2", "config_DGXH100_16x8x1056.sh", 1.613, "dgxh100_n16_ngc23.04_merlin_hugectr/dlrm_dcnv2"),
]
# The model leaves these outside 25%, too fast by a third (docs/planner.md): at 6 sequences per GPU NVIDIA's BERT
# steps take 22.3 and 24.1 ms (its untimed evaluations included), the model's compute + t0 + all-reduce ~16 ms.
UNDER_PREDICTED = {"config_DGXH100_64x8x3x1_pack.sh", "config_DGXH100_96x8x3x1_pack.sh"}
RESULTS_GIT = Path(os.environ.get("TRAINING_RESULTS_V3_GIT", "/work/.mirror/mlcommons+training_results_v3.0/repo"))


def predicted(bench: str, config: str) -> float:
    [row] = plan(REPO / bench / config, THROUGHPUT[bench][0])
    return row.minutes


@pytest.mark.parametrize("bench, config, minutes, folder", [
    pytest.param(*case, id=f"{case[0]}-{case[1]}", marks=pytest.mark.xfail(
        strict=True, reason="BERT at 64/96 nodes: the model is ~33% fast") if case[1] in UNDER_PREDICTED else ())
    for case in PUBLISHED])
def test_prediction_is_within_25_percent_of_nvidias_published_time(bench, config, minutes, folder):
    error = predicted(bench, config) / minutes - 1
    assert abs(error) <= TOLERANCE, f"{bench}/{config}: {error:+.1%} against {minutes} min ({folder})"


def test_the_issues_acceptance_command():
    proc = subprocess.run([sys.executable, "-m", "compliance.plan", "resnet50/config_DGXH100_8x8x50x1.sh",
                           "--throughput", "7009"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    minutes = float(re.search(r"^8 nodes: ([\d.]+) min, (\S+) dominates", proc.stdout, re.M).group(1))
    assert abs(minutes / 2.663 - 1) <= TOLERANCE, proc.stdout
    assert "| 8 | 64 | 3,200 | 35.15 |" in proc.stdout


def test_rows_add_up_and_name_the_dominant_term():
    [row] = plan(REPO / "dlrm_dcnv2" / "config_DGXH100_16x8x1056.sh", THROUGHPUT["dlrm_dcnv2"][0])
    assert sum(row.shares().values()) == pytest.approx(1.0)
    assert row.dominant == "step overhead" and row.gpus == 128 and row.global_batch == 135_168
    assert "| 16 | 128 | 135,168 |" in format_rows([row])


def test_other_node_counts_keep_the_per_gpu_batch_except_dlrms_global_batch():
    rows = plan(REPO / "resnet50" / "config_DGXH100_8x8x50x1.sh", 7009, [1, 64, 448])
    assert [r.global_batch for r in rows] == [400, 25_600, 179_200]
    assert "above every RCP" in " ".join(rows[2].notes)
    assert "last evaluation (35 epochs) comes before the RCP mean" in " ".join(rows[1].notes)  # NUMEPOCHS=37
    dlrm = plan(REPO / "dlrm_dcnv2" / "config_DGXH100_8x8x2112.sh", THROUGHPUT["dlrm_dcnv2"][0], [8, 16])
    assert [r.global_batch for r in dlrm] == [135_168, 135_168]


def test_the_one_node_config_predicts_its_own_measured_run():
    """On one node the model reproduces the throughput it was given: only evaluation is added."""
    [row] = plan(REPO / "resnet50" / "config_DGXH100_1x8x400x1.sh", THROUGHPUT["resnet50"][0])
    train_s = row.amount * IMAGENET_TRAIN_IMAGES / (8 * THROUGHPUT["resnet50"][0])
    assert row.compute_s + row.overhead_s + row.allreduce_s == pytest.approx(train_s)


@pytest.mark.parametrize("bench, batches", [("resnet", [1632, 3200, 20480, 32256, 70000]),
                                            ("bert", [256, 768, 3072, 4608]),
                                            ("dlrm_dcnv2", [55296, 135168, 100000])])
def test_rcp_means_are_the_rcp_checkers(bench, batches):
    from mlperf_logging.rcp_checker.rcp_checker import RCP_Checker

    checker = RCP_Checker("training", "3.0.0", bench, verbose=False)
    points = rcp_points(bench)
    assert {p.batch for p in points} == {r["BS"] for r in checker.pruned_rcp_data.values()}
    for batch in batches:
        mean, how = rcp_mean(points, batch)
        low = checker._find_top_min_rcp(batch, "pruned_rcps")
        high = checker._find_bottom_max_rcp(batch, "pruned_rcps")
        exact = checker._find_rcp(batch, "pruned_rcps")
        if exact is not None:
            expected = exact["RCP Mean"]
        elif low and high:
            expected = checker._create_interp_rcp(batch, low, high)[1]["RCP Mean"]
        elif high:  # below every RCP: the checker holds the run to the smallest
            expected = checker._find_min_rcp("pruned_rcps")["RCP Mean"]
        else:  # above every RCP: the checker has none ("Missing RCP"); the planner says so and takes the largest
            assert "above every RCP" in how
            continue
        assert mean == pytest.approx(float(expected)), (bench, batch, how)


def test_data_parallel_parameter_counts_are_the_models_here():
    torch = pytest.importorskip("torch")
    from bert.model import BertForPreTraining, model_config
    from dlrm_dcnv2.model import DLRMDCNv2, ModelShape
    from resnet50.model import build_resnet50

    with torch.device("meta"):
        resnet, bert = build_resnet50(1000), BertForPreTraining(model_config("full", 0.1)[0])
    dlrm = DLRMDCNv2(ModelShape.full(), device=torch.device("meta"))
    assert BENCHMARKS["resnet50"].params == sum(p.numel() for p in resnet.parameters())
    assert BENCHMARKS["bert"].params == sum(p.numel() for p in bert.parameters())
    assert BENCHMARKS["dlrm_dcnv2"].params == sum(p.numel() for name, p in dlrm.named_parameters()
                                                  if not name.startswith("embeddings."))


def test_throughput_is_read_from_an_h100_perf_table(tmp_path):
    (tmp_path / "resnet50_h100.md").write_text(
        "| model | batch | precision | images/s, step alone | images/s with loader |\n|---|---|---|---:|---:|\n"
        "| debug | 400 | bf16 | 1 | 1 |\n| ResNet-50, 224 px | 400 | bf16 | 7,100 | 7,009 |\n")
    config = REPO / "resnet50" / "config_DGXH100_8x8x50x1.sh"
    assert plan(config, perf_dir=tmp_path) == plan(config, 7009)


def test_overlap_hides_that_share_of_the_allreduce():
    config = REPO / "bert" / "config_DGXH100_64x8x3x1_pack.sh"
    [base] = plan(config, THROUGHPUT["bert"][0])
    [overlapped] = plan(config, THROUGHPUT["bert"][0], model=replace(MODEL, overlap=0.5))
    assert overlapped.allreduce_s == pytest.approx(base.allreduce_s / 2) and overlapped.minutes < base.minutes


@pytest.mark.parametrize("args, message", [
    (["resnet50/config_DGXH100_3x8x50x1.sh", "--throughput", "7009"], "config file resnet50/config_DGXH100_3x8x50x1.sh "
                                                                        "does not exist"),
    (["resnet50/config_DGXH100_8x8x50x1.sh", "--throughput", "0"], "throughput must be positive"),
    (["resnet50/config_DGXH100_8x8x50x1.sh", "--throughput", "-3"], "throughput must be positive"),
    (["resnet50/config_DGXH100_8x8x50x1.sh", "--throughput", "1e9"], "leaves no time for compute"),
    (["resnet50/config_DGXH100_8x8x50x1.sh", "--throughput", "7009", "--nodes", "0"], "node counts must be positive"),
    (["resnet50/config_DGXH100_8x8x50x1.sh"], "docs/perf/resnet50_h100.md does not exist"),
    (["resnet50/config_CPU_1x1x64x1.sh", "--throughput", "7009"], "DGX H100-class nodes"),
    (["gpt3/config_DGXH100_64x8x128x4x8_mbs1.sh", "--throughput", "1"], "gpt3 is not modelled yet"),
    (["dlrm_dcnv2/config_DGXH100_8x8x2112.sh", "--throughput", "1e6", "--nodes", "5"], "does not split over 40"),
])
def test_cli_errors_exit_2_naming_the_problem(args, message, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_unknown_benchmark_folder_exits_2(tmp_path, capsys):
    config = tmp_path / "resnet" / "config_DGXH100_8x8x50x1.sh"
    config.parent.mkdir()
    config.write_text("export BATCHSIZE=50\n")
    assert main([str(config), "--throughput", "7009"]) == 2
    assert "unknown benchmark folder 'resnet'" in capsys.readouterr().err


def nvidia_runs(folder: str) -> list[list[dict]]:
    """The events of each successful run of NVIDIA/results/<folder>, read from the results repository."""
    def show(path):
        return subprocess.run(["git", "--git-dir", str(RESULTS_GIT), "show", f"HEAD:{path}"],
                              capture_output=True, text=True, check=True).stdout

    names = show(f"NVIDIA/results/{folder}/").split()
    runs = []
    for name in (n for n in names if n.startswith("result_")):
        events = [json.loads(line[line.index(MLLOG_PREFIX) + len(MLLOG_PREFIX):])
                  for line in show(f"NVIDIA/results/{folder}/{name}").splitlines() if MLLOG_PREFIX in line]
        if next(e for e in events if e["key"] == "run_stop")["metadata"]["status"] == "success":
            runs.append(events)
    return runs


def seconds(events, key: str) -> float:
    return next(e["time_ms"] for e in events if e["key"] == key) / 1000


def eval_intervals(events) -> list[float]:
    starts = [e["time_ms"] for e in events if e["key"] == "eval_start"]
    stops = [e["time_ms"] for e in events if e["key"] == "eval_stop"]
    return [(stop - start) / 1000 for start, stop in zip(starts, stops)]


SAMPLES = {  # samples one run trained, in the RCP's sense
    "resnet50": lambda ev: [e for e in ev if e["key"] == "eval_accuracy"][-1]["metadata"]["epoch_num"]
    * IMAGENET_TRAIN_IMAGES,
    "bert": lambda ev: next(e["value"] for e in ev if e["key"] == "train_samples"),
    "dlrm_dcnv2": lambda ev: [e for e in ev if e["key"] == "eval_accuracy"][-1]["metadata"]["epoch_num"]
    * DLRM_RULES.train_samples,
}


@pytest.mark.skipif(not RESULTS_GIT.is_dir(), reason=f"no training_results_v3.0 git repository at {RESULTS_GIT}")
def test_constants_match_the_published_logs():
    for _, _, minutes, folder in PUBLISHED:
        times = sorted(seconds(ev, "run_stop") - seconds(ev, "run_start") for ev in nvidia_runs(folder))
        assert round(sum(times[1:-1]) / len(times[1:-1]) / 60, 3) == pytest.approx(minutes), folder
    for bench, (throughput, folder) in THROUGHPUT.items():
        runs = nvidia_runs(folder)
        trained = sum(SAMPLES[bench](ev) for ev in runs)
        busy = sum(seconds(ev, "run_stop") - seconds(ev, "run_start") - sum(eval_intervals(ev)) for ev in runs)
        assert trained / busy / 8 == pytest.approx(throughput, rel=1e-5), folder
        evals = [t for ev in runs for t in eval_intervals(ev)]
        if BENCHMARKS[bench].eval_rate is not None:  # per-eval seconds on 8 GPUs, as compliance.plan states them
            mean_eval = BENCHMARKS[bench].eval_samples / (BENCHMARKS[bench].eval_rate * 8)
            assert sum(evals) / len(evals) == pytest.approx(mean_eval, abs=5e-4), folder
        else:
            assert not evals, folder
