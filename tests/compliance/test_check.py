"""compliance.check's own rule: a log of this code must say whether its data was synthetic."""
import os

import torch

from common import schedule
from common.config import SystemConfig
from common.harness import MLPerfRun, train_to_target
from common.mlperf_log import MLPerfLogger
from common.precision import Precision
from common.step import TrainStep
from compliance.check import DATA_SYNTHETIC_RULE, summarize


def toy_log(path, log_synthetic: bool):
    logger = MLPerfLogger(filename=path, stream=open(os.devnull, "w"))
    model = torch.nn.Linear(1, 1)
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda b: model(b).sum(),
                     precision=Precision("fp32", "cpu"), device=torch.device("cpu"), count=len)
    with MLPerfRun(logger, "resnet", SystemConfig(system="TOY", nodes=1, gpus_per_node=1)) as run:
        if log_synthetic:
            logger.event("data_synthetic", True)
        run.start_timed_region()
        train_to_target(run, schedule.every_n_epochs(1, 1), step, iter([torch.ones(1, 1)]), lambda: 1.0,
                        lambda a: True)
    logger.close()
    return summarize(path)


def test_a_log_of_this_code_must_log_data_synthetic(tmp_path):
    marked = toy_log(tmp_path / "marked.log", log_synthetic=True)
    assert marked.from_this_code and marked.synthetic and marked.provenance_error() is None
    unmarked = toy_log(tmp_path / "unmarked.log", log_synthetic=False)
    assert unmarked.from_this_code and not unmarked.synthetic
    assert DATA_SYNTHETIC_RULE in unmarked.provenance_error()


def test_another_implementations_log_without_the_key_reads_as_real_data(tmp_path):
    log = tmp_path / "nvidia.log"
    log.write_text(':::MLLOG {"namespace": "", "time_ms": 1, "event_type": "POINT_IN_TIME", "key": '
                   '"submission_benchmark", "value": "resnet", "metadata": {"file": "/workspace/rn50/train.py", '
                   '"lineno": 12}}\n')
    run = summarize(log)
    assert not run.from_this_code and not run.synthetic and run.provenance_error() is None
