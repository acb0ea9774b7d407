"""The one MLPerf logging layer: every `:::MLLOG` line of this repo goes through here.

Only rank 0 writes (the rules want one log per run). `file`/`lineno` metadata
point at the code that called these helpers, not at this module, so the seed
checker and a reader of the log see the real call site.

Run as a module it logs a single event, which is how the shell layer records
`cache_clear` before the training process starts:

    python3 -m common.mlperf_log cache_clear true

and how it ends the log of a run whose training process died without logging `run_stop` (SIGKILL, a C++
abort inside a collective, the node lost) — the launcher, not the dead process, marks the run aborted:

    python3 -m common.mlperf_log --end-aborted LOG
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Mapping, TextIO

from mlperf_logging.mllog import constants
from mlperf_logging.mllog.mllog import MLLogger

__all__ = ["MLPerfLogger", "constants"]

REPO_ROOT = Path(__file__).resolve().parents[1]

# Frames between mllog's get_caller and our caller: MLLogger._log_helper,
# MLLogger.event/start/end, MLPerfLogger._log and MLPerfLogger.event/start/end.
_MLLOG_FRAMES = 3
# Each logger its own `logging` name: one derived from id() can come back for a later logger once the first is
# collected, and `logging` keeps named loggers (and their handlers) for good — the later one wrote twice.
_LOGGER_NUMBERS = itertools.count()


class MLPerfLogger:
    """Rank-aware wrapper around `mlperf_logging.mllog`.

    `stream` receives every line (stdout by default, which `run.sub` tees into
    the per-experiment log); `filename`, when given, receives a copy.
    """

    def __init__(self, rank: int = 0, filename: str | os.PathLike | None = None,
                 stream: TextIO | None = None):
        self.enabled = rank == 0
        self._logger = logging.getLogger(f"mlperf.run.{os.getpid()}.{next(_LOGGER_NUMBERS)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._handlers: list[logging.Handler] = []
        if self.enabled:
            self._handlers.append(logging.StreamHandler(stream or sys.stdout))
            if filename is not None:
                try:
                    Path(filename).parent.mkdir(parents=True, exist_ok=True)
                    self._handlers.append(logging.FileHandler(filename))
                except OSError as err:
                    raise OSError(f"{filename}: cannot write the MLPerf log there ({err.strerror or err})") from None
        for handler in self._handlers:
            self._logger.addHandler(handler)
        self._mllog = MLLogger(logger=self._logger, default_stack_offset=_MLLOG_FRAMES,
                               root_dir=str(REPO_ROOT))

    # depth: how many frames of this module sit between the caller and here.
    def _log(self, kind: str, key: str, value: Any, metadata: Mapping | None, depth: int) -> None:
        if not self.enabled:
            return
        method = getattr(self._mllog, kind)
        method(key=key, value=value, metadata=dict(metadata) if metadata else None,
               stack_offset=_MLLOG_FRAMES + depth)

    def event(self, key: str, value: Any = None, metadata: Mapping | None = None,
              depth: int = 0) -> None:
        self._log("event", key, value, metadata, depth)

    def start(self, key: str, value: Any = None, metadata: Mapping | None = None,
              depth: int = 0) -> None:
        self._log("start", key, value, metadata, depth)

    def end(self, key: str, value: Any = None, metadata: Mapping | None = None,
            depth: int = 0) -> None:
        self._log("end", key, value, metadata, depth)

    def events(self, values: Mapping[str, Any], depth: int = 0) -> None:
        """Log one POINT_IN_TIME event per item (hyperparameters and the like)."""
        for key, value in values.items():
            self.event(key, value, depth=depth + 1)

    def flush(self) -> None:
        """Push every line to disk; called after `run_stop` and on abort."""
        for handler in self._handlers:
            handler.flush()
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.FileHandler) and stream is not None:
                os.fsync(stream.fileno())

    def close(self) -> None:
        self.flush()
        for handler in self._handlers:
            self._logger.removeHandler(handler)
            handler.close()
        self._handlers.clear()


def end_aborted(log: Path) -> bool:
    """Append `run_stop` with status `aborted` to `log` when it has `run_start` and no `run_stop`; whether it
    did. Its time is when the launcher saw the training end, a little after the process died."""
    keys = set()
    for line in Path(log).read_text(errors="replace").splitlines():
        index = line.find(":::MLLOG ")
        if index >= 0:
            try:
                keys.add(json.loads(line[index + len(":::MLLOG "):]).get("key"))
            except json.JSONDecodeError:
                continue  # a line the dying process cut short
    if constants.RUN_START not in keys or constants.RUN_STOP in keys:
        return False
    with open(log, "a") as f:  # a line cut short by the dying process must not swallow ours
        f.write("\n")
    logger = MLPerfLogger(filename=log)
    logger.end(constants.RUN_STOP, metadata={constants.STATUS: constants.ABORTED,
                                             "reason": "the training process ended without logging run_stop"})
    logger.close()
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--end-aborted":
        if not Path(argv[1]).is_file():
            print(f"common.mlperf_log: {argv[1]}: no such log", file=sys.stderr)
            return 2
        end_aborted(Path(argv[1]))
        return 0
    if len(argv) != 2:
        print("usage: python3 -m common.mlperf_log KEY JSON_VALUE | --end-aborted LOG", file=sys.stderr)
        return 2
    key, raw = argv
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        print(f"common.mlperf_log: value for {key} must be JSON, got {raw!r}", file=sys.stderr)
        return 2
    MLPerfLogger().event(key, value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
