"""common.dist.exit_after: the exit code, the output and the atexit handlers survive its os._exit."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import atexit, sys
from common import dist
dist._group_started = {group}
atexit.register(lambda: print("atexit ran", flush=True))
def main():
    print("unflushed line", end="")
    {body}
dist.exit_after(main)
"""


def run(body: str, group: bool) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT.format(body=body, group=group)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("group", [True, False])
def test_return_code_output_and_atexit_handlers(group):
    r = run("return 3", group)
    assert r.returncode == 3
    assert r.stdout.startswith("unflushed line") and "atexit ran" in r.stdout


@pytest.mark.parametrize("group", [True, False])
def test_exception_prints_its_traceback_and_exits_1(group):
    r = run("raise ValueError('bad config')", group)
    assert r.returncode == 1
    assert "ValueError: bad config" in r.stderr and "atexit ran" in r.stdout


def test_system_exit_message_is_printed_with_status_1():
    r = run("raise SystemExit('missing FOO')", True)
    assert r.returncode == 1 and "missing FOO" in r.stderr
