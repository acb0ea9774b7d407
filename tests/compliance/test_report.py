"""compliance.report: the convergence plots, report.md, and the summarizer's olympic score."""
import json
import re

import pytest
import yaml
from matplotlib import image

from compliance import report
from compliance.check import rules_file
from compliance.report import GOALS, olympic_score, read_run, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_log(path, benchmark, seed, evals, minutes, status="success", batch_size=8):
    """A hand-made result log: `evals` is [(epoch_num, value)], the run lasting `minutes`."""
    events = [("submission_benchmark", benchmark, {}), ("seed", seed, {}), ("global_batch_size", batch_size, {}),
              ("data_synthetic", True, {}), ("run_start", None, {})]
    events += [("eval_accuracy", value, {"epoch_num": epoch}) for epoch, value in evals]
    lines = [{"key": key, "value": value, "time_ms": 0, "metadata": metadata} for key, value, metadata in events]
    lines.append({"key": "run_stop", "value": None, "time_ms": minutes * 60000, "metadata": {"status": status}})
    path.write_text("".join(f":::MLLOG {json.dumps(line)}\n" for line in lines))
    return path


def test_olympic_score_by_hand():
    # result_summarizer.py (mlperf-logging 4.1.68) _compute_strong_score_standalone: a log that fails (a
    # non-converged run fails the target's ATLEAST_ONE_CHECK) is a dropped score; max_dropped_scores = 4 for
    # unet3d, else 1; more dropped than that: no score. _compute_olympic_average sorts the rest and keeps
    # scores[max_dropped:len - (max_dropped - dropped)], so a failure is one of the slowest dropped.
    assert olympic_score([10, 11, 12, 13, 14], "resnet") == 12
    assert olympic_score([10, 12, 11, 14, None], "resnet") == pytest.approx((11 + 12 + 14) / 3)
    assert olympic_score([10, None, 11, 14, None], "resnet") is None
    assert olympic_score([5, 1, 9], "gpt3") == 5
    assert olympic_score([1, 2], "bert") is None  # nothing left to average
    unet3d = [float(m) for m in range(1, 39)] + [None, None]
    assert olympic_score(unet3d, "unet3d") == pytest.approx(sum(range(5, 37)) / 32)
    assert olympic_score(list(range(1, 36)) + [None] * 5, "unet3d") is None


@pytest.mark.parametrize("minutes, benchmark", [
    ([10, 12, 11, 14, None], "resnet"), ([3.5, 1.25, 2.0, 9.0, 4.0], "ssd"), ([5, 1, 9], "gpt3"),
    ([float(m % 7) + m / 100 for m in range(37)] + [None] * 3, "unet3d"), ([None, 4, 2, 8, 6, 1, 3, 9, 5, 7], "rnnt"),
    ([None, None, 1, 2, 3], "maskrcnn"), ([float(m) for m in range(35)] + [None] * 5, "unet3d")])
def test_olympic_score_is_the_summarizers(minutes, benchmark):
    summarizer = pytest.importorskip("mlperf_logging.result_summarizer.result_summarizer")
    dropped = sum(m is None for m in minutes)
    max_dropped = 4 if benchmark == "unet3d" else 1
    # _compute_strong_score_standalone computes a score only when dropped_scores <= max_dropped_scores
    expected = (summarizer._compute_olympic_average([m for m in minutes if m is not None], dropped, max_dropped)
                if dropped <= max_dropped else None)
    assert olympic_score(minutes, benchmark) == pytest.approx(expected)


def test_goals_are_the_checkers_targets():
    for benchmark, goals in GOALS.items():
        rules = yaml.safe_load(rules_file(f"closed_{benchmark}.yaml").read_text())
        check = next(rule["KEY"]["ATLEAST_ONE_CHECK"] for rule in rules
                     if "KEY" in rule and rule["KEY"]["NAME"] == "eval_accuracy")
        for component, goal in goals.items():
            value = r"v\['value'\]" + (rf"\['{component}'\]" if component else "")
            operator = "<=" if goal.lower_is_better else ">="
            match = re.search(rf"{value}\)?\s*{operator}\s*([0-9.]+)", check)
            assert match and float(match.group(1)) == goal.target, (benchmark, component, check)


def test_report_for_two_benchmarks_with_an_aborted_run(tmp_path):
    logs = [write_log(tmp_path / f"resnet_{seed}.log", "resnet", seed, [(4, 0.5), (8, 0.76)], minutes)
            for seed, minutes in [(1, 10), (2, 12), (3, 11), (4, 14)]]
    logs.append(write_log(tmp_path / "resnet_5.log", "resnet", 5, [(4, 0.4), (8, 0.6)], 20, status="aborted"))
    # rnnt: WER falls to its target (lower is better); BS 1024 is an RCP of rnnt's
    logs += [write_log(tmp_path / f"rnnt_{seed}.log", "rnnt", seed, [(1, 12.0), (2, 0.3), (3, 0.057)], minutes,
                       batch_size=1024) for seed, minutes in [(7, 3), (8, 4), (9, 5)]]
    out = tmp_path / "report"
    written = write_report(logs, out)

    pngs = [out / "resnet_convergence.png", out / "rnnt_convergence.png"]
    assert written == pngs + [out / "report.md"]
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        assert image.imread(png).ndim == 3
    text = (out / "report.md").read_text()
    resnet, rnnt = text.split("## resnet")[1].split("## rnnt")
    assert f"Olympic score: **{(11 + 12 + 14) / 3:.3f} min**" in resnet
    assert re.search(r"\| 5 \| \*\*aborted \(not converged\)\*\* \| 20\.000 \| - \|", resnet)
    assert "no RCP covers BS 8" in resnet
    assert "![resnet convergence](resnet_convergence.png)" in resnet
    assert "Olympic score: **4.000 min**" in rnnt and "RCP at BS 1024" in rnnt
    assert "WER <= 0.058" in rnnt


def test_lower_is_better_reaches_its_target_below_it(tmp_path):
    run = read_run(write_log(tmp_path / "rnnt.log", "rnnt", 1, [(1, 12.0), (2, 0.06), (3, 0.05)], 5))
    assert report.first_reached(run, GOALS["rnnt"]) == 3 and run.epochs == 3


def test_a_dict_metric_gets_a_panel_per_component(tmp_path):
    logs = [write_log(tmp_path / f"maskrcnn_{seed}.log", "maskrcnn", seed,
                      [(1, {"BBOX": 0.2, "SEGM": 0.2}), (2, {"BBOX": 0.38, "SEGM": 0.34})], 2 + seed)
            for seed in (1, 2)]
    runs = [read_run(log) for log in logs]
    assert report.components(runs) == ["BBOX", "SEGM"]
    assert report.first_reached(runs[0], GOALS["maskrcnn"]) == 2
    write_report(logs, tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "box mAP >= 0.377, mask mAP >= 0.339" in text and "| last BBOX | last SEGM |" in text
    assert "No olympic score: 2 runs leave none to average" in text


def test_bad_logs_are_named_with_the_reason(tmp_path, capsys):
    not_a_log = tmp_path / "notes.txt"
    not_a_log.write_text("hello\n")
    no_eval = write_log(tmp_path / "no_eval.log", "resnet", 1, [], 3)
    assert report.main([str(not_a_log), str(no_eval), str(tmp_path / "missing.log"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{not_a_log}: not an MLPerf log" in err
    assert f"{no_eval}: no eval_accuracy" in err
    assert f"{tmp_path / 'missing.log'}: cannot read it" in err
    assert "Traceback" not in err and not (tmp_path / "report.md").exists()
    with pytest.raises(report.ReportError, match="notes.txt: not an MLPerf log"):
        write_report([not_a_log], tmp_path / "out")


def test_a_bad_log_beside_good_ones_is_listed_in_the_report(tmp_path):
    good = write_log(tmp_path / "good.log", "ssd", 1, [(1, 0.35)], 2)
    bad = tmp_path / "bad.log"
    bad.write_bytes(b"\x00\xff:::MLLOG {not json\n")
    assert report.main([str(good), str(bad), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Logs left out" in text and f"{bad}: not an MLPerf log" in text
