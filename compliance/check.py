"""Check MLPerf result logs with the official compliance checker, ruleset 3.0.0.

    python3 -m compliance.check LOG [LOG ...]

For each log: the checker's verdict (`SUCCESS`/`FAILED`) and its messages,
then the run's status and time to target (run_start to run_stop). Exits 1 if
any log fails. The ruleset is always named: the checker's default is newer.

A synthetic-data run cannot satisfy a rule that pins the size of the real
validation set (`SYNTHETIC_WAIVERS`): such a log passes when the checker's only
objection is that key — shown by checking a copy with the rules' value put in —
and the verdict says so.

This project adds one rule of its own, `DATA_SYNTHETIC_LOGGED`: a log written
by this code (its harness logs its blocks from `common/harness.py`) must say
whether its data was synthetic — the harness always logs `data_synthetic`
before `run_start` — so a log without the key was cut or edited and fails,
rather than passing as real data. Logs of other implementations (NVIDIA's)
do not log the key and are read as real data.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

RULESET = "3.0.0"
USAGE = "training"
MLLOG_PREFIX = ":::MLLOG "
# benchmark -> {key: the value the rules fix}, waived only for logs with data_synthetic true.
SYNTHETIC_WAIVERS = {"dlrm_dcnv2": {"eval_samples": 89137319}}
PRODUCER_FILE = "common/harness.py"  # `file` metadata of the blocks this project's harness logs
DATA_SYNTHETIC_RULE = "DATA_SYNTHETIC_LOGGED"


@dataclass(frozen=True)
class RunSummary:
    benchmark: str | None
    status: str | None
    minutes: float | None
    synthetic: bool  # data_synthetic true (a missing key reads as false; see provenance_error)
    seed: int | None
    org: str | None
    from_this_code: bool = False  # logged by this project's harness
    logs_data_synthetic: bool = False
    preflight: bool = False  # written by compliance.preflight: simulated, nothing was trained
    stop_after_evals: int = 0  # STOP_AFTER_EVALS: a run cut short on purpose after that many evaluations
    malformed_lines: tuple = ()  # numbers of MLLOG lines whose JSON does not parse
    run_started: bool = False
    cache_clear: bool | None = None  # the launcher's cache_clear value: True when the page cache was dropped

    def integrity_error(self) -> str | None:
        """Why the log is not whole: an MLLOG line cut or edited, or a run that started and has no run_stop."""
        if self.malformed_lines:
            lines = ", ".join(map(str, self.malformed_lines[:5])) + (" ..." if len(self.malformed_lines) > 5 else "")
            return f"MLLOG line(s) {lines} are not valid JSON: the log was cut short or edited"
        if self.run_started and self.status is None:
            return ("run_start without run_stop: the log was cut short (a run that dies is closed with run_stop "
                    "aborted by its launcher, common/experiments.sh)")
        return None

    def provenance_error(self) -> str | None:
        """Why the log breaks DATA_SYNTHETIC_LOGGED, or None."""
        if self.from_this_code and not self.logs_data_synthetic:
            return (f"rule {DATA_SYNTHETIC_RULE}: the log comes from this code ({PRODUCER_FILE} logged its blocks) but "
                    "has no data_synthetic line, which the harness always logs before run_start; the log was cut or "
                    "edited, and whether it trained on synthetic data is unknown")
        return None


def rules_file(name: str) -> Path:
    """The installed checker's rule file for this ruleset, e.g. `closed_gpt3.yaml`."""
    import mlperf_logging

    return Path(mlperf_logging.__path__[0]) / "compliance_checker" / f"{USAGE}_{RULESET}" / name


class Malformed(dict):
    """Stands for an `:::MLLOG` line whose JSON does not parse (cut short, edited); `line` is its number."""


def _log_lines(path: Path, malformed: bool = False):
    """(line, the event it carries or None) for every line of a log; with `malformed`, a `Malformed` event
    for an MLLOG line that does not parse."""
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        index = line.find(MLLOG_PREFIX)
        event = None
        if index >= 0:
            try:
                event = json.loads(line[index + len(MLLOG_PREFIX):])
            except json.JSONDecodeError:
                event = Malformed(line=number) if malformed else None
        yield line, event


def read_events(path: Path) -> list[dict]:
    return [event for _, event in _log_lines(path) if event is not None]


def summarize(path: Path) -> RunSummary:
    values: dict = {}
    times: dict = {}
    status = None
    from_this_code = False
    malformed = []
    for _, event in _log_lines(path, malformed=True):
        if isinstance(event, Malformed):
            malformed.append(event["line"])
            continue
        if event is None:
            continue
        key = event.get("key")
        values.setdefault(key, event.get("value"))
        from_this_code |= (event.get("metadata") or {}).get("file") == PRODUCER_FILE
        if key in ("run_start", "run_stop"):
            times[key] = event["time_ms"]
        if key == "run_stop":
            status = event.get("metadata", {}).get("status")
    minutes = ((times["run_stop"] - times["run_start"]) / 60000
               if {"run_start", "run_stop"} <= times.keys() else None)
    return RunSummary(benchmark=values.get("submission_benchmark"), status=status, minutes=minutes,
                      synthetic=bool(values.get("data_synthetic", False)), seed=values.get("seed"),
                      org=values.get("submission_org"), from_this_code=from_this_code,
                      logs_data_synthetic="data_synthetic" in values,
                      preflight=bool(values.get("preflight", False)),
                      stop_after_evals=int(values.get("stop_after_evals") or 0), malformed_lines=tuple(malformed),
                      run_started="run_start" in values, cache_clear=values.get("cache_clear"))


def run_checker(path: Path) -> tuple[bool, str]:
    """(passed, checker output) from `python3 -m mlperf_logging.compliance_checker`."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "mlperf_logging.compliance_checker", "--usage", USAGE,
             "--ruleset", RULESET, "--log_output", str(Path(tmp) / "checker.log"), str(path)],
            capture_output=True, text=True)
    output = (proc.stdout + proc.stderr).strip()
    return proc.returncode == 0 and "SUCCESS" in output, output


def with_rules_values(path: Path, run: RunSummary) -> tuple[str, dict]:
    """The log's text with its benchmark's waived keys set to the rules' values (synthetic logs only), and
    {key: the logged value} of what was replaced."""
    waivers = SYNTHETIC_WAIVERS.get(run.benchmark or "", {}) if run.synthetic else {}
    lines, logged = [], {}
    for line, event in _log_lines(path):
        if event is not None and event.get("key") in waivers and event.get("value") != waivers[event["key"]]:
            logged[event["key"]] = event.get("value")
            event["value"] = waivers[event["key"]]
            line = line[:line.find(MLLOG_PREFIX)] + MLLOG_PREFIX + json.dumps(event)
        lines.append(line)
    return "\n".join(lines) + "\n", logged


def only_waived_keys_fail(path: Path, run: RunSummary) -> dict:
    """{key: logged value} when `path` fails only on its benchmark's synthetic waivers, else {}."""
    text, logged = with_rules_values(path, run)
    if not logged:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        patched = Path(tmp) / Path(path).name
        patched.write_text(text)
        passed, _ = run_checker(patched)
    return logged if passed else {}


def check_log(path: Path) -> tuple[bool, str, str, RunSummary]:
    """(passed, verdict, the checker's output and this project's errors, the run's summary) for one log: the
    official checker, DATA_SYNTHETIC_LOGGED, then the synthetic waivers."""
    passed, output = run_checker(path)
    run = summarize(path)
    provenance = run.provenance_error() or run.integrity_error()
    if provenance:
        output += f"\nERROR - {provenance}"
        passed = False
    verdict = "SUCCESS" if passed else "FAILED"
    waived = {} if passed or provenance else only_waived_keys_fail(path, run)
    if waived:
        passed = True
        verdict = "SUCCESS except the waived synthetic-data rule(s) " + ", ".join(
            f"{key}={value} (rules: {SYNTHETIC_WAIVERS[run.benchmark][key]})" for key, value in waived.items())
    return passed, verdict, output, run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    all_passed = True
    for log in args.logs:
        if not log.is_file():
            print(f"{log}: no such log file")
            all_passed = False
            continue
        passed, verdict, output, run = check_log(log)
        print(f"== compliance_checker --usage {USAGE} --ruleset {RULESET} {log}")
        print(output)
        all_passed &= passed
        minutes = f"{run.minutes:.3f} min" if run.minutes is not None else "n/a (no run_start/run_stop)"
        data = ("a simulated preflight log, nothing trained" if run.preflight
                else "synthetic data" if run.synthetic else "real data")
        if run.stop_after_evals:
            data += f", stopped after {run.stop_after_evals} evaluation(s) on purpose (STOP_AFTER_EVALS)"
        print(f"{log.name}: {verdict}; benchmark {run.benchmark}, "
              f"run_stop status {run.status}, time to target {minutes}, {data}")
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
