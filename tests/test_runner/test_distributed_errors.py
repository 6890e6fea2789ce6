"""The distributed layer in one process: user errors (launcher, environment, ``model_wrapper_cfg``)
and the identities every helper must be when no process group is up. The two-process behaviour is
in test_distributed.py."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler

from avalanche_ext import distributed
from avalanche_ext.errors import ConfigError
from tests.conftest import SYNTHETIC_CONFIG

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)


def test_pytorch_launcher_outside_torchrun_is_a_user_error(no_torchrun):
    with pytest.raises(ConfigError, match="RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set"):
        distributed.init_distributed("pytorch", "cpu")
    with pytest.raises(ConfigError, match="--launcher: expected one of"):
        distributed.init_distributed("slurm", "cpu")
    assert distributed.init_distributed("none", "cuda:1") == "cuda:1"  # nothing to do
    assert not distributed.is_distributed()


def test_cli_launcher_error_exits_2(no_torchrun, capsys):
    import train_config  # noqa: PLC0415

    code = train_config.main([str(SYNTHETIC_CONFIG), "--launcher", "pytorch"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: --launcher pytorch: RANK")


def test_model_wrapper_cfg_is_checked():
    assert distributed.wrapper_kwargs(None) == {}
    assert distributed.wrapper_kwargs(
        dict(type="DistributedDataParallel", find_unused_parameters=True)
    ) == {"find_unused_parameters": True}
    with pytest.raises(ConfigError, match=r"^model_wrapper_cfg\.find_unused: not an argument"):
        distributed.wrapper_kwargs(dict(find_unused=True))
    with pytest.raises(ConfigError, match=r"^model_wrapper_cfg\.device_ids: not an argument"):
        distributed.wrapper_kwargs(dict(device_ids=[0]))  # the plugin chooses the device
    with pytest.raises(ConfigError, match=r"^model_wrapper_cfg\.type: only"):
        distributed.wrapper_kwargs(dict(type="MMDistributedDataParallel"))


def test_bad_model_wrapper_cfg_fails_before_anything_is_written(synthetic_cfg, tmp_path):
    from avalanche_ext.runner import run  # noqa: PLC0415

    synthetic_cfg.model_wrapper_cfg = dict(bucket_cap=25)
    with pytest.raises(ConfigError, match=r"model_wrapper_cfg\.bucket_cap"):
        run(synthetic_cfg, work_dir=str(tmp_path / "work"))
    assert not (tmp_path / "work").exists()


def test_a_loader_that_does_not_shard_is_refused():
    """Every rank would train on all the data: refuse rather than train world-size times over."""

    class BatchedLoader:  # e.g. a GPU-resident batched data path that knows nothing of ranks
        def __iter__(self):
            return iter([])

    plugin = distributed.DistributedPlugin(seed=0)
    with pytest.raises(RuntimeError, match="BatchedLoader.*does not shard"):
        plugin.shard_loader(BatchedLoader())
    sharded = BatchedLoader()
    sharded.is_sharded = True
    assert plugin.shard_loader(sharded) is sharded


def test_one_process_helpers_are_identities():
    t = torch.arange(3)
    assert distributed.all_gather_tensor(t) is t
    assert distributed.gather_list(t) == [t]
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.run_on_main(lambda x: x + 1, 1) == 2
    assert distributed.all_reduce(torch.tensor([2.0]), "mean").tolist() == [2.0]
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.describe() == {"world_size": 1, "backend": None}
    assert distributed.attach(object(), seed=0) is None
    with distributed.main_first():
        pass
    assert distributed.shard_indices(5) == [0, 1, 2, 3, 4]
    # The permutation is DistributedSampler's, so one and many processes shuffle alike.
    reference = DistributedSampler(range(5), num_replicas=1, rank=0, shuffle=True, seed=4)
    reference.set_epoch(2)
    assert distributed.shard_indices(5, shuffle=True, seed=4, epoch=2) == list(reference)
