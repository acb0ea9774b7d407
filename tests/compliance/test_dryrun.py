"""`make dryrun` (compliance.dryrun) on a slice: two benchmarks, two real runs each, the rest of the required
runs stored as an earlier, interrupted dry run would have left them."""
import json
import re
import subprocess
import sys

import pytest

from compliance.dryrun import DATESTAMP
from compliance.package import BENCHMARKS, PACKAGE_SUCCESS
from tests.conftest import REPO, reseeded_copies

pytestmark = pytest.mark.slow
SLICE = {"gpt3": 3, "dlrm_dcnv2": 10}  # the two cheapest benchmarks and their required run counts


def dryrun(store, data_dirs):
    args = [f"--data-dir={bench}={path}" for bench, path in data_dirs.items()]
    return subprocess.run([sys.executable, "-m", "compliance.dryrun", "--bench", *SLICE, "--store", str(store),
                           *args], cwd=REPO, capture_output=True, text=True, timeout=1200)


def store_finished_run(store, bench, index, smoke_log):
    """Run `index` (seed `index`) as a finished earlier run: a re-seeded copy of a smoke log and its record
    without a checksum, so the dry run must check the log again before reusing it."""
    folder = store / bench / f"run_{index}"
    log = reseeded_copies([smoke_log], 1, folder, first_seed=index)[0]
    log.rename(folder / f"{DATESTAMP}_1.log")
    (folder / "result.json").write_text(json.dumps({"seed": index, "checker_passed": True, "wall_s": 1.0}))


@pytest.fixture(scope="module")
def sliced(gpt3_smoke, dlrm_smoke, gpt3_synthetic, dlrm_synthetic, tmp_path_factory):
    store = tmp_path_factory.mktemp("dryrun")
    smokes = {"gpt3": gpt3_smoke[1], "dlrm_dcnv2": dlrm_smoke[1]}
    for bench, count in SLICE.items():
        for index in range(3, count + 1):
            store_finished_run(store, bench, index, smokes[bench])
    data_dirs = {"gpt3": gpt3_synthetic, "dlrm_dcnv2": dlrm_synthetic}
    return store, data_dirs, dryrun(store, data_dirs)


def test_the_slice_runs_what_is_missing_packages_all_of_it_and_scores_each_benchmark(sliced):
    store, _, proc = sliced
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert PACKAGE_SUCCESS in out
    # the tree fails only on DLRM's rules-fixed validation size, which a synthetic set cannot have: the waiver
    # copy (that value alone replaced) passes, and the verdict names it
    assert "PACKAGE CHECKER FOUND ERRORS" in out
    assert "SUCCESS except the waived synthetic-data rule(s) (dlrm_dcnv2: eval_samples logged" in out
    for bench, count in SLICE.items():
        # runs 1 and 2 trained now, with their own seeds; the others were reused
        for index in (1, 2):
            assert f"{bench} run {index} of {count} (seed {index}): run_stop success" in out
            assert json.loads((store / bench / f"run_{index}" / "result.json").read_text())["checker_passed"]
            # CLEAR_CACHES=0: the page cache was left alone, and the log says so
            log = (store / bench / f"run_{index}" / f"{DATESTAMP}_1.log").read_text()
            assert '"key": "cache_clear", "value": false' in log and '"cache_clear", "value": true' not in log
        assert out.count(f"of {count} (seed") == count
        assert f"| {BENCHMARKS[bench].mlperf_name} | {count} | {count} | bypassed (dry run" in out  # runs, converged
    assert out.count("(kept from an earlier dry run)") == sum(n - 2 for n in SLICE.values())
    # the summarizer's score of each benchmark, in its own table
    system = json.loads(next((store / "package" / "mlperf-h100" / "systems").glob("*.json")).read_text())
    assert "DRY RUN" in system["sw_notes"]
    for bench in SLICE:
        assert re.search(rf"\| {system['system_name']} \| {BENCHMARKS[bench].mlperf_name} \| \d+\.\d{{3}} \|", out)
    results = store / "package" / "mlperf-h100" / "results" / system["system_name"]
    assert sorted(p.name for p in (results / "dlrm_dcnv2").iterdir()) == [f"result_{i}.txt" for i in range(10)]
    assert (store / "report" / "report.md").is_file() and (store / "report" / "gpt3_convergence.png").is_file()
    assert "DRY RUN PASSED: 2 benchmark(s), 13 runs (13 passing the checker), package checker SUCCESS" in out
    # the host that timed the runs, with its measured speed, printed first and at the top of timing.md
    host = re.search(r"^host: .+, \d+ cores, fp32 matmul \d+ GFLOP/s .*$", out, re.M)
    assert host and (store / "timing.md").read_text().startswith(host.group(0))


def test_a_second_call_reuses_every_finished_run_and_rebuilds_the_package(sliced):
    store, data_dirs, first = sliced
    assert first.returncode == 0
    logs = sorted(store.glob(f"*/run_*/{DATESTAMP}_1.log"))
    before = {log: log.stat().st_mtime_ns for log in logs}
    proc = dryrun(store, data_dirs)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.stdout.count("(kept from an earlier dry run)") == 13
    assert {log: log.stat().st_mtime_ns for log in logs} == before  # nothing trained again
    assert PACKAGE_SUCCESS in proc.stdout and "DRY RUN PASSED" in proc.stdout


def test_a_run_that_fails_the_checker_is_not_reused(tmp_path):
    from compliance.dryrun import Run, kept

    run = Run("gpt3", 1, 1, tmp_path / "gpt3" / "run_1")
    run.folder.mkdir(parents=True)
    run.log.write_text(':::MLLOG {"key": "seed", "value": 1}\n')  # cut short: no run_start, no run_stop
    run.record.write_text(json.dumps({"seed": 1, "checker_passed": True}))
    assert kept(run) is None
    run.record.write_text(json.dumps({"seed": 2, "checker_passed": True, "sha256": "x"}))
    assert kept(run) is None  # another seed


def test_bad_arguments_are_named():
    proc = subprocess.run([sys.executable, "-m", "compliance.dryrun", "--data-dir", "nosuch=/tmp"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--data-dir 'nosuch=/tmp': expected BENCH=PATH" in proc.stderr


def test_a_dataset_that_cannot_be_written_fails_the_dry_run_before_any_run_naming_the_command(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    proc = subprocess.run([sys.executable, "-m", "compliance.dryrun", "--bench", "gpt3", "--store", str(tmp_path / "s"),
                           f"--data-dir=gpt3={not_a_folder}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"FAILED: the synthetic dataset: -m gpt3.synthetic {not_a_folder}: exit status 1" in proc.stderr
    assert not (tmp_path / "s" / "gpt3" / "run_1").exists()


def test_the_verdict_is_read_from_the_experiment_loops_own_check(tmp_path):
    from compliance.dryrun import Run, checked_in_output

    run = Run("dlrm_dcnv2", 1, 1, tmp_path)
    output = tmp_path / "output.txt"
    for text, passed in [("dryrun_1.log: SUCCESS; benchmark resnet, run_stop status success\n", True),
                         ("dryrun_1.log: SUCCESS except the waived synthetic-data rule(s) eval_samples=65536 "
                          "(rules: 89137319); benchmark dlrm_dcnv2\n", True),
                         ("dryrun_1.log: FAILED; benchmark resnet, run_stop status None\n", False),
                         ("Traceback (most recent call last):\n", False)]:
        output.write_text(text)
        assert checked_in_output(run) is passed, text


def test_a_run_that_ended_short_of_the_target_is_kept_for_the_olympic_rule(tmp_path):
    from compliance.dryrun import Run, kept, sha256

    run = Run("gpt3", 1, 1, tmp_path / "gpt3" / "run_1")
    run.folder.mkdir(parents=True)
    run.log.write_text(':::MLLOG {"key": "seed", "value": 1}\n')
    record = {"seed": 1, "checker_passed": False, "status": "aborted", "sha256": sha256(run.log)}
    run.record.write_text(json.dumps(record))
    assert kept(run) == record
    run.record.write_text(json.dumps({**record, "status": None}))  # cut short: no run_stop
    assert kept(run) is None
    run.record.write_text(json.dumps({**record, "crashed": True}))  # aborted by an exception: run again
    assert kept(run) is None


def test_a_diverged_loss_ends_a_run_short_of_the_target_and_any_other_exception_is_a_crash():
    from compliance.dryrun import crashed

    assert not crashed("epoch 3\nMLPerf run ended by NonFiniteLoss: loss is nan at step 12\n")
    assert crashed("MLPerf run ended by RuntimeError: shape mismatch\n")
    assert not crashed("dryrun_1.log: FAILED; benchmark resnet, run_stop status aborted\n")  # out of epochs


def test_the_timing_table_measures_finished_benchmarks_and_estimates_the_rest(tmp_path):
    from compliance.dryrun import plan_runs, timing_table

    runs = plan_runs(["gpt3", "rnnt", "unet3d"], tmp_path, 1)
    done = {run: {"wall_s": 30.0, "checker_passed": True, "status": "success", "minutes": 0.2}
            for run in runs if run.bench == "gpt3" or (run.bench == "rnnt" and run.index <= 2)}
    table = timing_table(runs, done)
    assert "| gpt3 | 3 of 3 | 3 | 3 | 1.5 | 0.50 | 0.20 | 1.5 |" in table
    assert "| rnnt | 2 of 10 | 2 | 2 | 1.0 | 0.50 | 0.20 | ~5.0 (estimated) |" in table
    assert "| unet3d | 0 of 40 | 0 | 0 | 0.0 | - | - | - (none run yet) |" in table
    assert "| all | 5 of 53 | | | | | | ~6.5 (estimated; benchmarks with no run yet left out) |" in table


def test_a_failing_speed_probe_is_reported_not_raised(monkeypatch):
    from compliance import describe_host

    monkeypatch.setattr(describe_host, "SPEED_PROBE", "raise SystemExit('no torch here')")
    assert re.fullmatch(r"host: .+, \d+ cores, speed probe failed \(no torch here\) .*", describe_host.host_line())


def test_sigterm_stops_the_run_under_way_records_nothing_and_leaves_no_process(gpt3_synthetic, tmp_path):
    import os
    import signal
    import time

    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-m", "compliance.dryrun", "--bench", "gpt3", "--store", str(store),
                             f"--data-dir=gpt3={gpt3_synthetic}"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = store / "gpt3" / "run_1" / f"{DATESTAMP}_1.log"
    deadline = time.monotonic() + 300
    while not (log.is_file() and '"key": "run_start"' in log.read_text()):  # training under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130 and "the next call resumes" in err
    assert time.monotonic() - stopped < 60
    assert not (store / "gpt3" / "run_1" / "result.json").exists()  # run again next time
    time.sleep(1)
    for pattern in (str(store), f"gpt3.train .*{gpt3_synthetic}"):  # tee of the log, the training processes
        leftover = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        assert [pid for pid in leftover if int(pid) != os.getpid()] == [], pattern
