"""Every benchmark's CPU smoke log, as `make smoke` writes it, against the keys the rules require.

One parametrized test over the benchmarks: the rule files of the installed
checker (training_3.0.0 common.yaml, closed_common.yaml, closed_<benchmark>.yaml)
say which keys must appear exactly once or at least once; the real log of the
smoke run (the session fixtures of tests/conftest.py) must have them, say
`data_synthetic: true`, and count its blocks in the benchmark's one unit.
"""
import pytest
import yaml

from compliance.check import read_events, rules_file, summarize

# benchmark folder -> (fixture with its smoke run, logged name, rule files beyond closed_<name>.yaml, unit)
SMOKES = {
    "resnet50": ("resnet_cpu_experiments", "resnet", ["closed_resnet_lars.yaml"], "epochs"),
    "bert": ("bert_smoke", "bert", [], "samples"),
    "gpt3": ("gpt3_smoke", "gpt3", [], "tokens"),
    "dlrm_dcnv2": ("dlrm_smoke", "dlrm_dcnv2", [], "fraction of the epoch"),
    "retinanet": ("retinanet_smoke", "ssd", [], "epochs"),
    "maskrcnn": ("maskrcnn_smoke", "maskrcnn", [], "epochs"),
    "unet3d": ("unet3d_smoke", "unet3d", [], "epochs"),
    "rnnt": ("rnnt_smoke", "rnnt", [], "epochs"),
}

pytestmark = pytest.mark.slow


def smoke_log(request, bench):
    proc, logs = request.getfixturevalue(SMOKES[bench][0])
    return logs[0] if isinstance(logs, list) else logs


def required(names: list[str]) -> dict[str, str]:
    """key -> REQ over the rule files (the strictest wins: EXACTLY_ONE over AT_LEAST_ONE)."""
    out = {}
    for name in names:
        for rule in yaml.safe_load(rules_file(name).read_text()):
            key = rule.get("KEY")
            if key and key.get("REQ"):
                out[key["NAME"]] = "EXACTLY_ONE" if "EXACTLY_ONE" in (out.get(key["NAME"]), key["REQ"]) \
                    else key["REQ"]
    return out


@pytest.mark.parametrize("bench", sorted(SMOKES))
def test_the_smoke_log_has_every_key_the_rules_require(request, bench):
    _, name, extra, _ = SMOKES[bench]
    events = read_events(smoke_log(request, bench))
    keys = [e["key"] for e in events]
    rules = required(["common.yaml", "closed_common.yaml", f"closed_{name}.yaml", *extra])
    assert {"submission_benchmark", "eval_accuracy", "global_batch_size"} <= set(rules)
    for key, req in rules.items():
        if req == "EXACTLY_ONE":
            assert keys.count(key) == 1, f"{key}: logged {keys.count(key)} times, the rules want exactly one"
        elif req.startswith("AT_LEAST_ONE_OR("):
            other = req[len("AT_LEAST_ONE_OR("):-1]
            assert keys.count(key) + keys.count(other) >= 1, f"{key} (or {other}) is not logged"
        else:
            assert keys.count(key) >= 1, f"{key} is not logged"


@pytest.mark.parametrize("bench", sorted(SMOKES))
def test_the_smoke_log_is_marked_synthetic_and_counts_blocks_in_one_unit(request, bench):
    _, name, _, unit = SMOKES[bench]
    log = smoke_log(request, bench)
    run = summarize(log)
    assert (run.benchmark, run.synthetic, run.from_this_code, run.provenance_error()) == (name, True, True, None)
    events = read_events(log)
    blocks = [e["metadata"] for e in events if e["key"] == "block_start"]
    evals = [e["metadata"]["epoch_num"] for e in events if e["key"] == "eval_accuracy"]
    if unit == "epochs":  # 1-based: evaluations label the epochs completed, at the end of a block
        assert blocks[0]["first_epoch_num"] >= 1  # (unet3d trains blocks without evaluation before its first)
        assert set(evals) <= {b["first_epoch_num"] + b["epoch_count"] - 1 for b in blocks}
    else:  # an amount: the first block starts at 0 trained; each evaluation at the amount trained then
        assert blocks[0]["first_epoch_num"] == 0 and 0 < evals[0]
    for block, following in zip(blocks, blocks[1:]):  # blocks tile the run without gaps or overlaps
        assert following["first_epoch_num"] == pytest.approx(block["first_epoch_num"] + block["epoch_count"])
    assert evals == sorted(evals)
