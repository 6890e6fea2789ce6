"""The batched data path (in-memory uint8 tensors, augmentation once per minibatch); see batched.py."""

from avalanche_ext.data.batched import (
    BatchedDataPlugin,
    BatchIterator,
    eval_batches,
    extract,
    iter_batches,
)
from avalanche_ext.data.batched_transforms import BATCHED_TRANSFORMS, compile_pipeline
from avalanche_ext.data.tensor_view import TensorView, tensor_view

__all__ = [
    "BATCHED_TRANSFORMS",
    "BatchIterator",
    "BatchedDataPlugin",
    "TensorView",
    "compile_pipeline",
    "eval_batches",
    "extract",
    "iter_batches",
    "tensor_view",
]
