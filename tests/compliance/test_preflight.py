"""compliance.preflight: a config's log rendered without data or training, checked, and diffed against a real log."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from compliance import preflight
from compliance.check import MLLOG_PREFIX, read_events, summarize
from compliance.package import BENCHMARKS, PackageError, validate_logs

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in REPO.glob("*/config_*.sh") if not p.name.endswith("_common.sh"))
RESNET_8 = REPO / "resnet50" / "config_DGXH100_8x8x50x1.sh"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_logs_what_the_checker_accepts_under_a_covering_rcp(config, tmp_path, capsys):
    assert preflight.main([str(config), "--log", str(tmp_path / "preflight.log")]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert ": SUCCESS" in out and "preflight: OK" in out


def test_resnet_8_nodes_renders_nvidias_block_and_cadence(tmp_path, capsys):
    log = tmp_path / "p.log"
    assert preflight.main([str(RESNET_8), "--log", str(log), "--nexp", "5"]) == 0
    out = capsys.readouterr().out
    assert "8xNVIDIA DGX H100" in out and "WALLTIME 36 min for NEXP=5" in out  # 5 x 6 + 6
    assert "| lars_opt_base_learning_rate | 11.0 |" in out and "| model_bn_span | 50 |" in out
    evals = [e["metadata"]["epoch_num"] for e in read_events(log) if e["key"] == "eval_accuracy"]
    assert evals == list(range(3, 36, 4))  # NVIDIA/results/dgxh100_n8_ngc23.04_mxnet/resnet/result_*.txt
    assert "| 9 | 14035 | 44,912,000 | 35 |" in out  # 35 epochs of 401 steps (1,281,167 / 3,200 rounded up)
    assert "interpolated between resnet_ref_1632 (batch 1632) and resnet_ref_3264 (batch 3264)" in out
    run = summarize(log)
    assert run.preflight and run.synthetic and run.status == "success"


def test_a_global_batch_above_every_rcp_is_reported_and_fails(tmp_path, capsys):
    folder = tmp_path / "resnet50"
    folder.mkdir()
    config = folder / "config_DGXH100_96x8x100x1.sh"
    config.write_text(f"source {RESNET_8}\nexport DGXSYSTEM=DGXH100_96x8x100x1\nexport DGXNNODES=96\n"
                      "export BATCHSIZE=100\n")
    assert preflight.main([str(config), "--log", str(tmp_path / "p.log")]) == 1
    out = capsys.readouterr().out
    assert "RCP at global batch 76,800: NONE: batch 76800 is above the largest RCP" in out
    assert "preflight: FAILED" in out


def test_a_config_that_cannot_load_names_the_variable(tmp_path, capfd):
    folder = tmp_path / "resnet50"
    folder.mkdir()
    config = folder / "config_DGXH100_1x8x9x1.sh"
    config.write_text(f"source {RESNET_8}\nexport BATCHSIZE=nine\n")
    assert preflight.main([str(config)]) == 2
    assert "BATCHSIZE='nine' is not an integer" in capfd.readouterr().err  # fd level: whatever sys.stderr is now


def rewrite(log: Path, out: Path, change) -> Path:
    """`out`: the events of `log` passed through change(event) -> event or None (dropped), plus what it adds."""
    lines = []
    for event in read_events(log):
        for kept in change(event):
            lines.append(MLLOG_PREFIX + json.dumps(kept))
    out.write_text("\n".join(lines) + "\n")
    return out


def test_compare_finds_a_changed_a_missing_and_an_extra_key_and_a_moved_evaluation(tmp_path, capsys):
    ours = tmp_path / "ours.log"
    preflight.write_log(preflight.load(RESNET_8), ours)

    def edit(event):
        if event["key"] == "lars_opt_momentum":
            event = {**event, "value": 0.95}
        if event["key"] == "d_batch_size":
            return []  # only in ours: "extra"
        if event["key"] == "eval_accuracy" and event["metadata"]["epoch_num"] == 7:
            event = {**event, "metadata": {**event["metadata"], "epoch_num": 8}}
        if event["key"] == "global_batch_size":
            return [event, {**event, "key": "s_new_knob", "value": 1}]  # only in theirs: "missing"
        return [event]

    theirs = rewrite(ours, tmp_path / "theirs.log", edit)
    assert preflight.main([str(RESNET_8), "--log", str(tmp_path / "p.log"), "--compare", str(theirs)]) == 1
    out = capsys.readouterr().out
    assert "| lars_opt_momentum | 0.9 | 0.95 | differs | FAIL |" in out
    assert "| s_new_knob | - | 1 | missing |  |" in out  # not required: shown, not failing
    assert "| d_batch_size | 50 | - | extra |  |" in out
    assert "failing: lars_opt_momentum; eval schedule: evaluation 2: the plan's epoch_num 7, the log's 8" in out

    same = rewrite(ours, tmp_path / "same.log", lambda e: [e])
    assert preflight.main([str(RESNET_8), "--log", str(tmp_path / "p2.log"), "--compare", str(same)]) == 0
    assert "every key and value the same" in capsys.readouterr().out


def test_a_missing_required_key_fails_unless_allowed_with_its_reason():
    diffs = preflight.compare_settings({"a": 1}, {"a": 1, "lars_opt_momentum": 0.9}, {"lars_opt_momentum"}, {})
    assert [(d.key, d.verdict, d.fails) for d in diffs] == [("a", "same", False), ("lars_opt_momentum", "missing",
                                                                                   True)]
    allowed = preflight.compare_settings({}, {"k": 2}, {"k"}, {"k": "deliberate"})
    assert allowed[0].allowed == "deliberate" and not allowed[0].fails


def test_the_resnet_rules_and_rcps_require_what_they_list():
    required = preflight.required_keys("resnet", "lars")
    assert {"lars_opt_base_learning_rate", "lars_epsilon", "global_batch_size", "opt_name"} <= required
    assert not any(key.startswith("sgd_") for key in required)  # closed_resnet_sgd.yaml is the other optimizer's
    assert preflight.rcp_keys("resnet", {"lars_opt_momentum", "model_bn_span"}) >= {"lars_opt_momentum",
                                                                                   "model_bn_span", "opt_name"}


def test_a_preflight_log_is_never_packaged(tmp_path):
    log = tmp_path / "result_0.txt"
    preflight.write_log(preflight.load(RESNET_8), log)
    spec = BENCHMARKS["resnet50"]
    logs = [log] * spec.result_count
    with pytest.raises(PackageError, match="a preflight log"):
        validate_logs(logs, spec, summarize(log).org, dry_run=True)


def test_measured_progress_is_compared_within_the_plans_tolerance_only():
    assert preflight.compare_schedule([150528.0, 301056.0], [150369.0], tolerance=0.01) is None
    assert preflight.compare_schedule([150528.0], [150369.0]) == "evaluation 1: the plan's epoch_num 150528.0, " \
                                                                 "the log's 150369.0"
    assert preflight.compare_schedule([100.0], [100.0, 200.0]) == "the log evaluates 2 times, the plan only 1"
