import pytest

from common.dist import first_host, read_dist_env


@pytest.mark.parametrize("nodelist, host", [
    ("node1", "node1"),
    ("gpu[003-005,009]", "gpu003"),
    ("gpu[07,09]", "gpu07"),
    ("dgx-a[1-2],dgx-b7", "dgx-a1"),
    ("localhost,other", "localhost"),
])
def test_first_host(nodelist, host):
    assert first_host(nodelist) == host


def test_torchrun_variables():
    env = read_dist_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4",
                         "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234",
                         "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_STEP_ID": "0"})
    assert (env.launcher, env.rank, env.world_size, env.local_rank, env.local_world_size) == \
        ("torchrun", 3, 8, 1, 4)
    assert (env.master_addr, env.master_port) == ("10.0.0.1", 1234)


def test_slurm_task_variables():
    env = read_dist_env({"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1",
                         "SLURM_STEP_ID": "0", "SLURM_STEP_NODELIST": "dgx[012-013]",
                         "SLURM_STEP_TASKS_PER_NODE": "8(x2)"})
    assert (env.launcher, env.rank, env.world_size, env.local_rank, env.local_world_size) == \
        ("slurm", 9, 16, 1, 8)
    assert (env.master_addr, env.master_port) == ("dgx012", 29500)


def test_slurm_batch_script_is_not_a_task():
    env = read_dist_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "16", "SLURM_JOB_NODELIST": "dgx1"})
    assert (env.launcher, env.world_size) == ("single", 1)


def test_bad_integer_is_named():
    with pytest.raises(ValueError, match="WORLD_SIZE='two'"):
        read_dist_env({"RANK": "0", "WORLD_SIZE": "two"})


def test_process_group_always_joins_a_one_rank_group_in_a_single_process():
    """PROCESS_GROUP=always: one process still runs the real collectives (gloo here, NCCL on a GPU)."""
    import torch
    import torch.distributed

    from common import dist as cdist
    device, seed = cdist.start(cdist.read_dist_env({}), "cpu", 5, 60, always_group=True)
    try:
        assert torch.distributed.is_initialized() and torch.distributed.get_world_size() == 1 and seed == 5
        assert torch.distributed.get_backend() == "gloo"
        assert cdist.all_reduce_sum(torch.ones(2)).tolist() == [1.0, 1.0]
    finally:
        cdist.shutdown()
    assert not torch.distributed.is_initialized()
