"""Two gloo processes on the CPU: collectives, DDP through an Avalanche strategy, and whole runs through
the CLI's ``--launcher pytorch`` (one results.json, the full test set once, ``--resume``), compared
with one process at the same global batch.

All of it runs in one spawn of two processes (tests/test_runner/distributed_worker.py), so the
imports are paid once; every test below reads what the ranks saved.
"""

from __future__ import annotations

import importlib
import socket
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

# The spawned ranks import the worker by module name; "tests" is also a site-packages package here,
# so the worker's own folder goes on the path (the children inherit it).
sys.path.insert(0, str(Path(__file__).resolve().parent))
distributed_worker = importlib.import_module("distributed_worker")

pytestmark = pytest.mark.slow
WORLD = 2
# The synthetic runs' test experiences hold 15 images (class-incremental, 3 classes each): one image
# is 1/15 = 0.067 of an experience's accuracy. Two ranks see the training images in another order
# (and flip other ones) than one process does, so their accuracies may differ by two images.
ACCURACY_TOLERANCE = 2 / 15 + 1e-9


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    context = mp.start_processes(
        distributed_worker.worker,
        args=(WORLD, _free_ports(4), str(out)),
        nprocs=WORLD,
        join=False,
        start_method="spawn",
    )
    deadline = time.time() + 300
    while not context.join(timeout=1):
        if time.time() > deadline:
            for p in context.processes:
                p.kill()
            pytest.fail("the two ranks did not finish in 300 s")
    seen = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    print("seconds per phase:", [s["seconds"] for s in seen])
    return seen, out


# ------------------------------------------------------------------ collectives
def test_all_gather_tensor_concatenates_variable_lengths_identically(ranks):
    seen, _ = ranks
    for s in seen:
        assert torch.equal(s["gather_empty"], torch.arange(6.0).reshape(3, 2))
        assert s["gather_int"].tolist() == [0, 1, 100, 101, 102, 103, 104]
        assert s["gather_bool"].tolist() == [True, False, True]
        assert s["gather_scalar"].tolist() == [0.0, 1.0]
        assert s["mean"].tolist() == [1.5]


def test_avalanche_cat_all_is_wrong_for_an_empty_rank(ranks):
    """Why all_gather_tensor is ours: DistributedHelper.cat_all turns rank 1's empty tensor into a
    bogus element (a pooled-nothing rank would add a sample to the gate's pool)."""
    seen, _ = ranks
    assert len(seen[0]["helper_cat_all"]) == 3  # expected 2: [1.0, 2.0]


def test_broadcast_and_errors_from_rank_0(ranks):
    seen, _ = ranks
    for s in seen:
        assert s["broadcast"]["from"] == 0 and s["broadcast"]["t"].tolist() == [0]
        assert s["run_on_main_error"] == "work_dir: cannot write /nowhere"
        assert s["device"] == "cpu"


def test_shards_cover_every_index_once_or_pad_equally(ranks):
    seen, _ = ranks
    assert seen[0]["shard"] == [0, 2, 4, 6] and seen[1]["shard"] == [1, 3, 5]
    shuffled = seen[0]["shard_shuffled"] + seen[1]["shard_shuffled"]
    assert sorted(shuffled) == list(range(7)) and shuffled != [0, 2, 4, 6, 1, 3, 5]
    assert [len(s["shard_padded"]) for s in seen] == [4, 4]


# ------------------------------------------------------------------ DDP through a strategy
def test_ddp_matches_one_process_with_the_global_batch(ranks):
    """Linear model, no shuffling: two ranks x 2 images per step are one process x 4 images per
    step, so the gradients (averaged by DDP) and the weights are the same."""
    seen, _ = ranks
    one = seen[0]["one_linear"]
    for s in seen:
        for w, w1 in zip(s["linear"]["weights"], one["weights"]):
            torch.testing.assert_close(w, w1, rtol=1e-5, atol=1e-6)
    assert seen[0]["linear"]["ddp_builds"] == 1


def test_eval_covers_the_test_set_once_in_order(ranks):
    """9 test images over 2 ranks (rank 1 padded with a duplicate): the metrics and the recorded
    predictions are those of one process with eval batch 2 x 2."""
    seen, _ = ranks
    one = seen[0]["one_linear"]
    for s in seen:
        assert s["linear"]["y"].tolist() == [0, 1, 2] * 3
        assert torch.equal(s["linear"]["p"], one["p"])
        name = "Top1_Acc_Stream/eval_phase/test_stream"
        assert s["linear"]["metrics"][name] == one["metrics"][name]
        name = "Loss_Stream/eval_phase/test_stream"
        assert s["linear"]["metrics"][name] == pytest.approx(one["metrics"][name], rel=1e-5)


def test_epochs_shuffle_differently_and_shards_are_disjoint(ranks):
    seen, _ = ranks
    fixed = [s["shuffled"]["order"] for s in seen]
    for epoch in range(2):
        assert sorted(fixed[0][epoch] + fixed[1][epoch]) == list(range(12))
    assert fixed[0][0] != fixed[0][1]
    # Avalanche's own loaders (replay, task-labelled experiences) shard themselves, but build a new
    # DistributedSampler(seed=0) at every epoch: the same order every epoch, until we seed it.
    for s in seen:
        bug, ours = s["avalanche_loader_epochs"], s["loader_epochs"]
        assert bug[0] == bug[1] and ours[0] != ours[1]
    assert sorted(seen[0]["loader_epochs"][1] + seen[1]["loader_epochs"][1]) == list(range(12))


def test_batch_norm_statistics_are_rank_0s_after_each_epoch(ranks):
    seen, _ = ranks
    a, b = seen[0]["bn"], seen[1]["bn"]
    assert not torch.equal(a["last_iteration"], b["last_iteration"])  # each rank's own batches
    assert torch.equal(a["after_epoch"], b["after_epoch"])
    assert torch.equal(a["after_epoch"], a["last_iteration"])


def test_generators_are_aligned_after_training(ranks):
    seen, _ = ranks
    assert torch.equal(
        seen[0]["shuffled"]["rand_after_train"], seen[1]["shuffled"]["rand_after_train"]
    )


# ------------------------------------------------------------------ whole runs through the CLI
def test_rank_0_alone_writes_one_run(ranks):
    seen, _ = ranks
    assert seen[0]["rc"] == 0 and seen[1]["rc"] == 0
    files = seen[0]["files"]
    assert sum(f.endswith("results.json") for f in files) == 1
    assert sum(f.endswith(".log") for f in files) == 1  # rank 1 built no logger
    assert len({f.split("/")[0] for f in files} - {"latest"}) == 1
    assert seen[0]["results"]["distributed"] == {"world_size": 2, "backend": "gloo"}


def test_metrics_cover_the_full_test_set(ranks):
    seen, _ = ranks
    results = seen[0]["results"]
    test_size = sum(e["size"] for e in results["scenario"]["test_stream"])
    matrix = torch.tensor(results["confusion_matrix"])
    assert matrix.sum() == test_size == 30
    assert matrix.sum(dim=1).tolist() == [5] * 6
    # Avalanche's stream accuracy saw the very samples the recorder saw.
    assert results["final"]["stream_accuracy"] == pytest.approx(
        float(matrix.diag().sum() / matrix.sum())
    )


def test_accuracy_matches_one_process_with_the_same_global_batch(ranks):
    seen, _ = ranks
    assert seen[1]["one_rc"] == 0
    two, one = seen[0]["results"], seen[1]["one_results"]
    assert min(two["accuracy_matrix"][i][i] for i in range(2)) >= 0.8  # the stream is learned
    for row2, row1 in zip(two["accuracy_matrix"], one["accuracy_matrix"]):
        for a2, a1 in zip(row2, row1):
            assert abs(a2 - a1) <= ACCURACY_TOLERANCE
    assert abs(two["final"]["stream_accuracy"] - one["final"]["stream_accuracy"]) <= 1 / 15


def test_resume_continues_to_the_same_results(ranks):
    seen, _ = ranks
    assert seen[0]["resume_rc"] == 0 and seen[1]["resume_rc"] == 0
    full, resumed = seen[0]["results"], seen[0]["resumed"]
    for key in ("accuracy_matrix", "final", "per_class_accuracy", "confusion_matrix"):
        assert resumed[key] == full[key], key
