"""Multi-GPU and multi-node runs through ``torchrun`` (PyTorch DDP), on Avalanche's ``DistributedHelper``.

``torchrun --nproc_per_node N train_config.py CONFIG --launcher pytorch`` starts N processes; each calls
:func:`init_distributed` (gloo on CPU, nccl on CUDA, ``cuda:LOCAL_RANK``) and the runner attaches a
:class:`DistributedPlugin` to its strategy. What Avalanche 0.6 does and does not do, and why each
piece here exists:

* ``DistributedHelper`` is used for the rank, world size, barrier and object broadcast, and Avalanche's
  own loaders (evaluation, replay, task-balanced) shard by themselves (``DistributedSampler``) once
  the process group is up; the plain ``DataLoader`` it builds to train on experiences without task
  labels (ours) does not, and :class:`DistributedPlugin` rebuilds it on a seeded
  ``DistributedSampler``. Its
  ``init_distributed`` is not used: it puts every process on ``cuda:<global rank>`` (wrong from the
  second node on) and reseeds every generator. Its ``gather_all``/``cat_all`` turn an empty tensor
  into a bogus scalar, so :func:`all_gather_tensor` is our own (tests show both).
* Avalanche's loaders build a fresh ``DistributedSampler(seed=0)`` at every epoch, so every epoch (and
  every experience of the same size) sees the same order; :func:`init_distributed` replaces the class
  they construct with one seeded by the run's seed and the epoch count of the strategy's clock.
* Strategies never wrap the model: :class:`DistributedPlugin` runs the training forward through a
  ``DistributedDataParallel`` view of ``strategy.model`` (rebuilt when the head grows or the set of
  trainable parameters changes), while every plugin keeps seeing the plain model.
* Metrics are never reduced: evaluation minibatches are gathered after the forward, so Avalanche's
  metrics, the loss and the runner's prediction recorder see the whole test set exactly once, on
  every rank, in the order of a one-process run whose ``eval_mb_size`` is ``world x eval_mb_size``
  (the padding ``DistributedSampler`` adds is dropped).

Batch sizes are per process, as in mmengine: the global training batch is
``cl_strategy.train_mb_size x world_size`` (the learning rate is not rescaled). Rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from avalanche.benchmarks.utils import data_loader as _avl_data_loader
from avalanche.distributed import DistributedHelper
from avalanche.training.plugins import SupervisedPlugin
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from avalanche_ext.checkpoint import get_rng_state, set_rng_state
from avalanche_ext.errors import ConfigError

__all__ = [
    "LAUNCHERS",
    "DistributedPlugin",
    "all_gather_tensor",
    "all_reduce",
    "attach",
    "barrier",
    "broadcast_object",
    "describe",
    "gather_list",
    "init_distributed",
    "is_distributed",
    "is_main",
    "load_on_every_rank",
    "local_rank",
    "main_first",
    "rank",
    "run_on_main",
    "shard_indices",
    "sync_module_states",
    "sync_rng_state",
    "teardown",
    "world_size",
    "wrapper_kwargs",
]

LAUNCHERS = ("none", "pytorch")
_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
# DistributedDataParallel arguments a config may set through ``model_wrapper_cfg`` (mmengine's key):
# all of this torch version's but those the plugin decides (module, devices, process group).
_DDP_OWN = {"self", "module", "device_ids", "output_device", "dim", "process_group", "device_mesh"}
_DDP_KEYS = tuple(
    p for p in inspect.signature(DistributedDataParallel).parameters if p not in _DDP_OWN
)
_MAX_DIMS = 8
T = TypeVar("T")


# ------------------------------------------------------------------ process group
def is_distributed() -> bool:
    """Whether a process group is up (more than one process or not)."""
    return DistributedHelper.is_distributed


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return DistributedHelper.rank


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return DistributedHelper.world_size


def local_rank() -> int:
    """This process's rank on its node (``LOCAL_RANK``, set by torchrun; 0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if is_distributed() else 0


def is_main() -> bool:
    """True on rank 0 (and in a one-process run): the only process that writes files."""
    return DistributedHelper.is_main_process


def describe() -> dict[str, Any]:
    """``{"world_size", "backend"}`` for results.json."""
    return {
        "world_size": world_size(),
        "backend": dist.get_backend() if is_distributed() else None,
    }


class _EpochSeededDistributedSampler(DistributedSampler):
    """Avalanche constructs its ``DistributedSampler`` anew at every epoch with seed 0 and epoch 0;
    this one takes the run's seed and the epoch :class:`DistributedPlugin` announced."""

    state = {"seed": 0, "epoch": 0}

    def __init__(self, dataset: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("seed", self.state["seed"])
        super().__init__(dataset, *args, **kwargs)
        self.set_epoch(self.state["epoch"])


def init_distributed(launcher: str, device: str | None = "cpu") -> str:
    """Joins the process group torchrun described in the environment; returns this process's device.

    Args:
        launcher: ``'none'`` (one process; nothing happens) or ``'pytorch'`` (torchrun's environment:
            ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).
        device: ``cpu`` (gloo backend) or ``cuda`` (nccl backend, ``cuda:LOCAL_RANK``).

    Returns:
        str: the device string this process must use.

    Raises:
        ConfigError: unknown launcher, environment not set by torchrun, CUDA missing, or an explicit
            ``cuda:N`` with more than one process.
    """
    if launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher: expected one of {LAUNCHERS}, got {launcher!r}")
    name = (device or "cpu").strip()
    if launcher == "none":
        return name
    missing = [k for k in _ENV if k not in os.environ]
    if missing:
        raise ConfigError(
            f"--launcher pytorch: {', '.join(missing)} not set; start the run with "
            "torchrun --nproc_per_node N train_config.py CONFIG --launcher pytorch"
        )
    if is_distributed():
        raise ConfigError("--launcher pytorch: the process group is already initialized")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available on this machine")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if dev.index is not None and int(os.environ["WORLD_SIZE"]) > 1:
            raise ConfigError(
                f"--device {name}: with --launcher pytorch each process uses cuda:LOCAL_RANK; "
                "pass --device cuda (choose GPUs with CUDA_VISIBLE_DEVICES)"
            )
        if local >= torch.cuda.device_count():
            raise ConfigError(
                f"--launcher pytorch: LOCAL_RANK {local} but only {torch.cuda.device_count()} "
                "CUDA device(s) on this node"
            )
        torch.cuda.set_device(local)
        name, backend = f"cuda:{local}", "nccl"
    elif dev.type == "cpu":
        backend = "gloo"
    else:
        raise ConfigError(f"--device {name}: expected cpu or cuda")
    dist.init_process_group(backend=backend)
    DistributedHelper.use_cuda = backend == "nccl"
    _avl_data_loader.DistributedSampler = _EpochSeededDistributedSampler
    return name


def teardown() -> None:
    """Leaves the process group (no-op when there is none) and undoes the sampler replacement."""
    _avl_data_loader.DistributedSampler = DistributedSampler
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    """Waits for every process (no-op when not distributed)."""
    DistributedHelper.barrier()


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ------------------------------------------------------------------ collectives
def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` as rank ``src`` holds it, on every rank (pickled; identity when not distributed).

    Tensors inside arrive on the CPU of the receiving ranks; rank ``src`` gets its own object back.

    Args:
        obj: the object (ignored on ranks other than ``src``).
        src: the sending rank.
    """
    return DistributedHelper.broadcast_object(obj, src=src)


def gather_list(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``tensor``, in rank order; lengths along dim 0 may differ (and may be 0).

    The trailing dimensions and the dtype must agree between the non-empty tensors; an empty tensor
    (``numel() == 0``) takes the others' trailing shape and dtype.

    Args:
        tensor: this rank's tensor (any device).

    Returns:
        list[Tensor]: ``world_size`` tensors on ``tensor``'s device.

    Raises:
        ValueError: trailing shapes or dtypes differ between ranks, or more than 8 dimensions.
    """
    if not is_distributed():
        return [tensor]
    if tensor.dim() > _MAX_DIMS:
        raise ValueError(f"all_gather_tensor: at most {_MAX_DIMS} dimensions, got {tensor.dim()}")
    comm = _comm_device()
    x = tensor.detach()
    if x.dim() == 0:
        x = x.reshape(1)
    if x.dtype not in _DTYPES:
        raise ValueError(f"all_gather_tensor: unsupported dtype {x.dtype}")
    header = torch.full((_MAX_DIMS + 3,), -1, dtype=torch.long)
    header[0], header[1], header[2] = int(x.numel() > 0), x.dim(), _DTYPES.index(x.dtype)
    header[3 : 3 + x.dim()] = torch.tensor(x.shape)
    headers = [torch.empty_like(header, device=comm) for _ in range(world_size())]
    dist.all_gather(headers, header.to(comm))
    rows = [h.cpu().tolist() for h in headers]
    filled = [r for r in rows if r[0] == 1]
    if not filled:
        return [tensor.detach().clone().reshape(x.shape) for _ in rows]
    ref = filled[0]
    shapes, dtypes = [tuple(r[3 : 3 + r[1]]) for r in filled], {r[2] for r in filled}
    if len({(len(s), s[1:]) for s in shapes}) > 1 or len(dtypes) > 1:
        raise ValueError(
            "all_gather_tensor: trailing shapes and dtypes must agree over ranks, got "
            f"{shapes} and {sorted(_DTYPES[d] for d in dtypes)}"
        )
    trailing, dtype = tuple(ref[4 : 3 + ref[1]]), _DTYPES[ref[2]]
    lengths = [r[3] if r[0] == 1 else 0 for r in rows]
    longest = max(lengths)
    wire = torch.uint8 if dtype == torch.bool else dtype  # gloo cannot gather bool: send uint8
    send = torch.zeros((longest, *trailing), dtype=wire, device=comm)
    if x.numel():
        send[: len(x)] = x.to(device=comm, dtype=wire)
    received = [torch.empty_like(send) for _ in rows]
    dist.all_gather(received, send)
    return [r[:n].to(device=tensor.device, dtype=dtype) for r, n in zip(received, lengths)]


_DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
]


def all_gather_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The concatenation (rank order, along dim 0) of every rank's ``tensor``; identical on every
    rank. Lengths may differ between ranks and may be 0 (see :func:`gather_list`).

    Identity when not distributed. For the discovery plugins: each rank scores its shard
    (:func:`shard_indices` with ``pad=False``), then gathers indices, scores and features.

    Args:
        tensor: this rank's tensor (any device; the result is on the same device).
    """
    if not is_distributed():
        return tensor
    return torch.cat(gather_list(tensor))


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """A reduced copy of ``tensor`` over ranks: ``'sum'``, ``'mean'``, ``'max'`` or ``'min'``.

    Args:
        tensor: same shape on every rank.
        op: the reduction.
    """
    ops = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM}
    ops.update(max=dist.ReduceOp.MAX, min=dist.ReduceOp.MIN)
    if op not in ops:
        raise ValueError(f"all_reduce: op must be one of {sorted(ops)}, got {op!r}")
    if not is_distributed():
        return tensor.clone()
    out = tensor.detach().to(_comm_device(), copy=True)
    dist.all_reduce(out, op=ops[op])
    if op == "mean":
        out = out / world_size()
    return out.to(tensor.device)


def shard_indices(
    n: int, shuffle: bool = False, seed: int = 0, epoch: int = 0, pad: bool = True
) -> list[int]:
    """The sample indices of this rank, as ``torch.utils.data.DistributedSampler`` gives them.

    Args:
        n: dataset length.
        shuffle: permute first (with ``seed + epoch``, the same permutation on every rank).
        seed: permutation seed.
        epoch: permutation epoch.
        pad: repeat the first indices so every rank gets ``ceil(n / world)`` (training, and the
            evaluation gather of :class:`DistributedPlugin`); False: rank ``r`` gets ``r::world`` of
            the (permuted) order, every index exactly once over ranks (plugin scoring passes).
    """
    order = list(range(n))
    if shuffle:  # DistributedSampler's own permutation
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    if not is_distributed():
        return order
    if not pad:
        return order[rank() :: world_size()]
    sampler = DistributedSampler(range(n), shuffle=shuffle, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return list(sampler)


# ------------------------------------------------------------------ rank 0 does, every rank knows
@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (data unpacking, caches), the other ranks after it."""
    if not is_distributed():
        yield
        return
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def run_on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Calls ``fn`` on rank 0 only and returns its result on every rank.

    A ``ConfigError`` raised by ``fn`` is raised on every rank with the same message (so every
    process ends with the same ``error: ...`` line instead of waiting for rank 0 forever).

    Args:
        fn: what rank 0 runs (e.g. ``make_run_dir``).
        *args: its positional arguments.
        **kwargs: its keyword arguments.
    """
    if not is_distributed():
        return fn(*args, **kwargs)
    if is_main():
        try:
            value = fn(*args, **kwargs)
        except ConfigError as err:
            broadcast_object(("config_error", str(err)))
            raise
        except BaseException as err:
            broadcast_object(("error", f"rank 0 failed: {type(err).__name__}: {err}"))
            raise
        broadcast_object(("ok", value))
        return value
    kind, value = broadcast_object(None)
    if kind == "config_error":
        raise ConfigError(value)
    if kind == "error":
        raise RuntimeError(value)
    return value


def load_on_every_rank(path: Any, loader: Callable[[Any], T]) -> T:
    """``loader(path)`` on every rank; ranks that cannot see ``path`` (no shared file system between
    nodes) receive rank 0's result instead.

    Args:
        path: the file (e.g. the checkpoint rank 0 wrote).
        loader: reads it (e.g. ``load_checkpoint``).
    """
    if not is_distributed():
        return loader(path)
    sees = torch.tensor([int(os.path.isfile(path))])
    if bool(all_reduce(sees, "min").item()):
        return loader(path)
    return run_on_main(loader, path)


# ------------------------------------------------------------------ models and generators
@torch.no_grad()
def sync_module_states(model: torch.nn.Module, src: int = 0) -> None:
    """Copies rank ``src``'s parameters and buffers (batch-norm statistics) into every rank's model."""
    if not is_distributed():
        return
    comm = _comm_device()
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.device == comm:
            dist.broadcast(tensor.data, src=src)
        else:
            moved = tensor.data.to(comm)
            dist.broadcast(moved, src=src)
            tensor.data.copy_(moved)


def sync_rng_state(src: int = 0) -> None:
    """Gives every rank rank ``src``'s python, numpy, torch (and current CUDA) generator states, so
    random choices plugins make (replay buffer subsets, k-means seeds) agree across ranks."""
    if not is_distributed():
        return
    state = get_rng_state()
    if torch.cuda.is_available() and dist.get_backend() == "nccl":
        state["cuda"] = torch.cuda.get_rng_state()
    state = broadcast_object(state, src=src)
    if rank() != src:
        set_rng_state(state)
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"])


# ------------------------------------------------------------------ the strategy side
class DistributedPlugin(SupervisedPlugin, supports_distributed=True):
    """Data-parallel training and whole-test-set evaluation for any Avalanche strategy.

    Attach it with :func:`attach` (it wraps the strategy's ``forward`` and
    ``make_train_dataloader``). Plugins keep seeing the plain ``strategy.model``: only the strategy's
    training forward goes through DDP, so gradients are averaged over ranks at every backward; the
    training loader is sharded (:meth:`shard_loader`). Per hook:

    * ``before_training_exp``: generators aligned to rank 0; the DDP view is rebuilt at the first
      training forward (the head may have grown; DDP broadcasts rank 0's weights).
    * ``before_training_epoch``: the epoch (``train_exp_counter``, ``train_exp_epochs`` of the
      clock, both checkpointed) seeds the shuffling of every rank's shard.
    * ``after_training_epoch``: rank 0's parameters and buffers copied to every rank (batch-norm
      statistics differ per rank otherwise), generators aligned again (``after_training_exp``
      plugins, e.g. a replay buffer update, then draw the same samples on every rank).
    * evaluation forward: outputs, targets, task labels and every other minibatch field but the
      input are gathered over ranks (padding dropped); ``after_eval_exp`` checks that the
      experience was covered exactly once.

    Args:
        seed (int): the run's seed (shuffling of the shards).
        **ddp_kwargs: ``DistributedDataParallel`` arguments (``find_unused_parameters`` when some
            trainable parameters get no gradient in a forward, ``bucket_cap_mb``, ...); DDP's
            defaults otherwise (rank 0's buffers are broadcast at every forward).
    """

    def __init__(self, seed: int = 0, **ddp_kwargs: Any) -> None:
        super().__init__()
        self.seed = int(seed)
        self.ddp_kwargs = dict(ddp_kwargs)
        self.ddp: DistributedDataParallel | None = None
        self._ddp_key: tuple | None = None
        self._eval_position = 0
        self._eval_seen = 0
        self.num_ddp_builds = 0

    # ---------------------------------------------------------------- wiring
    def attach(self, strategy: Any) -> None:
        """Routes ``strategy.forward`` through :meth:`forward`, shards the loader
        ``strategy.make_train_dataloader`` builds, and appends the plugin (last, so checkpoint names
        of the other plugins do not move)."""
        plain_forward = strategy.forward
        strategy.forward = lambda: self.forward(strategy, plain_forward)
        plain_make_loader = strategy.make_train_dataloader

        def make_train_dataloader(**kwargs: Any) -> None:
            plain_make_loader(**kwargs)
            strategy.dataloader = self.shard_loader(strategy.dataloader)

        strategy.make_train_dataloader = make_train_dataloader
        strategy.plugins.append(self)

    def shard_loader(self, loader: Any) -> Any:
        """A plain ``DataLoader`` (what Avalanche 0.6 builds for experiences without task labels, as
        ours are) rebuilt on a ``DistributedSampler`` with the run's seed. Avalanche's own loaders
        (replay, task-balanced) shard themselves (``distributed_sampling``), and so may any loader
        that says so with ``is_sharded = True`` (e.g. built on :func:`shard_indices`).

        Done inside ``make_train_dataloader``, before any ``before_training_exp`` hook, so a
        scheduler reading ``len(strategy.dataloader)`` sees this rank's number of iterations.

        Raises:
            RuntimeError: a loader that does not shard (every rank would train on all the data).
        """
        if getattr(loader, "distributed_sampling", False) or getattr(loader, "is_sharded", False):
            return loader
        if isinstance(getattr(loader, "sampler", None), DistributedSampler):
            return loader
        plain = (RandomSampler, torch.utils.data.SequentialSampler)
        if type(loader) is not DataLoader or type(loader.sampler) not in plain:
            raise RuntimeError(
                f"DistributedPlugin: the training loader ({type(loader).__name__}) does not shard "
                "the data over processes; build it on avalanche_ext.distributed.shard_indices and "
                "set its is_sharded = True"
            )
        sampler = DistributedSampler(
            loader.dataset,
            shuffle=isinstance(loader.sampler, RandomSampler),
            seed=self.seed,
            drop_last=loader.drop_last,
        )
        return DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=sampler,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            drop_last=loader.drop_last,
            timeout=loader.timeout,
            worker_init_fn=loader.worker_init_fn,
            persistent_workers=loader.persistent_workers,
        )

    def _ddp_for(self, model: torch.nn.Module) -> DistributedDataParallel:
        key = (id(model), tuple((id(p), p.requires_grad) for p in model.parameters()))
        if self.ddp is None or key != self._ddp_key:
            device_ids = None
            if next(model.parameters()).is_cuda:
                device_ids = [torch.cuda.current_device()]
            self.ddp = DistributedDataParallel(model, device_ids=device_ids, **self.ddp_kwargs)
            self._ddp_key = key
            self.num_ddp_builds += 1
        self.ddp.training = model.training
        return self.ddp

    def forward(self, strategy: Any, plain_forward: Callable[[], Any]) -> Any:
        """The strategy's own forward, through DDP when training, gathered when evaluating."""
        if strategy.is_training:
            model = strategy.model
            strategy.model = self._ddp_for(model)
            try:
                return plain_forward()
            finally:
                strategy.model = model
        return self._gather_eval(strategy, plain_forward())

    def _gather_eval(self, strategy: Any, output: torch.Tensor) -> torch.Tensor:
        """Global minibatch ``j`` = samples ``[j*B*W, (j+1)*B*W)`` of the experience, in order:
        rank ``r``'s local position ``p`` holds sample ``r + p*W`` (``DistributedSampler`` without
        shuffling), so stacking ranks and transposing restores the order."""
        if not isinstance(output, torch.Tensor):
            raise TypeError("DistributedPlugin: the model must return a tensor of logits")
        n, world, b = len(strategy.adapted_dataset), world_size(), len(output)
        parts = gather_list(output)
        if any(len(p) != b for p in parts):
            raise RuntimeError(
                "DistributedPlugin: evaluation minibatches differ in size between ranks; the eval "
                "loader must shard like DistributedSampler(shuffle=False, drop_last=False)"
            )
        start = self._eval_position * world
        valid = torch.arange(start, start + b * world) < n
        self._eval_position += b
        self._eval_seen += int(valid.sum())

        def interleave(chunks: list[torch.Tensor]) -> torch.Tensor:
            stacked = torch.stack(chunks, dim=1)  # [b, W, ...]: sample r + p*W at [p, r]
            flat = stacked.reshape(b * world, *stacked.shape[2:])
            return flat[valid.to(flat.device)]

        mbatch = strategy.mbatch
        for i in range(1, len(mbatch)):
            if isinstance(mbatch[i], torch.Tensor) and len(mbatch[i]) == b:
                mbatch[i] = interleave(gather_list(mbatch[i]))
        return interleave(parts)

    # ---------------------------------------------------------------- hooks
    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.ddp, self._ddp_key = None, None
        sync_rng_state()

    def before_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        clock = strategy.clock
        epoch = int(clock.train_exp_counter) * 100_003 + int(clock.train_exp_epochs)
        _EpochSeededDistributedSampler.state.update(seed=self.seed, epoch=epoch)
        sampler = getattr(strategy.dataloader, "sampler", None)
        if isinstance(sampler, DistributedSampler):  # the one shard_loader made
            sampler.set_epoch(epoch)

    def after_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        sync_module_states(strategy.model)
        sync_rng_state()

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.ddp, self._ddp_key = None, None

    def before_eval_exp(self, strategy: Any, **kwargs: Any) -> None:
        self._eval_position, self._eval_seen = 0, 0

    def after_eval_exp(self, strategy: Any, **kwargs: Any) -> None:
        n = len(strategy.adapted_dataset)
        if self._eval_seen != n:
            raise RuntimeError(
                f"DistributedPlugin: evaluated {self._eval_seen} samples of an experience of {n}; "
                "the eval loader must shard like DistributedSampler(shuffle=False, drop_last=False)"
            )


def wrapper_kwargs(wrapper_cfg: dict | None) -> dict[str, Any]:
    """The ``DistributedDataParallel`` arguments of the config's ``model_wrapper_cfg`` (mmengine's
    key), checked while the experiment is built (before anything is written, in one process too).

    Args:
        wrapper_cfg: ``dict(type='DistributedDataParallel', find_unused_parameters=True, ...)``:
            keyword arguments of this torch version's ``DistributedDataParallel`` but the module,
            devices and process group (``find_unused_parameters``, ``bucket_cap_mb``,
            ``gradient_as_bucket_view``, ``static_graph``, ...); None: DDP's defaults.

    Raises:
        ConfigError: not a dict, another ``type``, or an unknown key.
    """
    if wrapper_cfg is None:
        return {}
    if not hasattr(wrapper_cfg, "items"):
        raise ConfigError(f"model_wrapper_cfg: expected a dict, got {wrapper_cfg!r}")
    cfg = dict(wrapper_cfg)
    kind = cfg.pop("type", "DistributedDataParallel")
    if kind != "DistributedDataParallel":
        raise ConfigError(
            f"model_wrapper_cfg.type: only 'DistributedDataParallel' is supported, got {kind!r}"
        )
    unknown = sorted(set(cfg) - set(_DDP_KEYS))
    if unknown:
        raise ConfigError(
            f"model_wrapper_cfg.{unknown[0]}: not an argument of DistributedDataParallel; "
            f"expected one of {list(_DDP_KEYS)}"
        )
    return cfg


def attach(
    strategy: Any, seed: int = 0, ddp_kwargs: dict | None = None
) -> DistributedPlugin | None:
    """Attaches a :class:`DistributedPlugin` to ``strategy`` when running distributed.

    Args:
        strategy: the built strategy.
        seed: the run's seed.
        ddp_kwargs: ``DistributedDataParallel`` arguments (:func:`wrapper_kwargs`).

    Returns:
        The plugin, or None in a one-process run (nothing is attached).
    """
    if not is_distributed():
        return None
    plugin = DistributedPlugin(seed=seed, **(ddp_kwargs or {}))
    plugin.attach(strategy)
    return plugin
