"""The public Python API: load a config, run it, load a trained model, predict, evaluate.

The command lines (``train_config.py``, ``tools/infer.py``, ``tools/test.py``) and the app are thin
layers over these functions, so all of them load, predict and evaluate the same way::

    from avalanche_ext import api
    results = api.run("configs/synthetic/naive_resnet8_1ep_synthetic.py")
    predictor = api.load_model(results["run_dir"])
    for p in predictor.predict(["cat.png"]):
        print(p.topk)            # [(class id, class name, probability), ...]
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from avalanche_ext.checkpoint import load_checkpoint
from avalanche_ext.config import load_config
from avalanche_ext.errors import ConfigError
from avalanche_ext.images import open_image
from avalanche_ext.metrics.discovery import training_mapping
from avalanche_ext.ncd_state import DiscoveryState, KnownClassStats
from avalanche_ext.run_record import RunRecord
from avalanche_ext.strict import scenario_config
from avalanche_ext.transforms import build_pipeline

__all__ = [
    "DiscoveryInfo",
    "Prediction",
    "Predictor",
    "evaluate",
    "find_checkpoint",
    "load_config",
    "load_model",
    "predict",
    "run",
]

ImageInput = str | os.PathLike | Image.Image | torch.Tensor
_GATE = "ConfidenceGatedPoolPlugin"


def run(config: str | os.PathLike | Config, **kwargs: Any) -> dict[str, Any]:
    """Trains and evaluates one experiment: :func:`avalanche_ext.runner.run` on a config file or a
    loaded config.

    Args:
        config: a config path or a :class:`mmengine.config.Config`.
        **kwargs: :func:`avalanche_ext.runner.run`'s options (``device``, ``work_dir``, ``seed``,
            ``resume``, ``dry_run``, ``progress``).

    Returns:
        The results dict (also in ``<run_dir>/results.json``).
    """
    from avalanche_ext.runner import run as run_config  # noqa: PLC0415

    if not isinstance(config, Config):
        kwargs.setdefault("config_path", str(config))
        config = load_config(config)
    return run_config(config, **kwargs)


def find_checkpoint(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(checkpoint, run folder)`` of a run folder (its ``checkpoints/latest.pth``) or a checkpoint.

    Raises:
        ConfigError: nothing there, or a run folder without a checkpoint.
    """
    p = Path(path)
    if p.is_file():
        run_dir = p.parent.parent if p.parent.name == "checkpoints" else p.parent
        return p, run_dir
    if not p.is_dir():
        raise ConfigError(f"{p}: no such run folder or checkpoint")
    ckpt = p / "checkpoints" / "latest.pth"
    if not ckpt.is_file():
        raise ConfigError(
            f"{p}: no checkpoint in this run folder (expected checkpoints/latest.pth)"
        )
    return ckpt, p


@dataclass
class Prediction:
    """One image's prediction.

    Args:
        source: the file name, or ``image[i]`` for in-memory inputs.
        topk: ``(class id, class name, probability)``, most probable first.
        novelty_score: the gate's novelty score (discovery runs; higher = more likely novel).
        pooled: whether the gate would pool the image as a novelty candidate (score > threshold).
        discovered_id: the predicted head row when it is a discovered class (else None).
        mapped_class: the class the discovered id was matched to on the training clusters.
        mapped_name: that class's name.
    """

    source: str
    topk: list[tuple[int, str, float]]
    novelty_score: float | None = None
    pooled: bool | None = None
    discovered_id: int | None = None
    mapped_class: int | None = None
    mapped_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["topk"] = [{"class": c, "name": n, "probability": p} for c, n, p in self.topk]
        return out


@dataclass
class DiscoveryInfo:
    """What a discovery run keeps to explain a prediction: known classes, the discovered-id ->
    class mapping (FRoST's Hungarian matching on the training clusters), and the gate's score.

    Args:
        known_classes: the labeled class ids.
        mapping: discovered id -> class id.
        score: the gate's novelty score (``NOVELTY_SCORERS`` key).
        threshold: the gate's threshold in force (None: unknown).
        stats: known-class feature statistics (feature-space scores).
        temperature: the score's temperature.
        score_kwargs: the score's extra arguments.
    """

    known_classes: list[int]
    mapping: dict[int, int]
    score: str = "msp"
    threshold: float | None = None
    stats: KnownClassStats | None = None
    temperature: float = 1.0
    score_kwargs: dict[str, Any] = field(default_factory=dict)

    def novelty(self, logits: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """The gate's novelty score of each row (on the known classes' logits)."""
        from avalanche_ext.novelty import score_samples  # noqa: PLC0415

        known = self.stats.num_classes if self.stats is not None else len(self.known_classes)
        return score_samples(
            self.score,
            logits[:, :known],
            features,
            self.stats,
            self.temperature,
            **self.score_kwargs,
        )


def _model_state(payload: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """The newest weights of a checkpoint (a mid-experience one keeps them under ``mid``)."""
    state = (payload.get("mid") or {}).get("model") or payload.get("model")
    state = state if state is not None else payload.get("state_dict", payload)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path}: holds no model weights")
    return state


def _load_weights(model: torch.nn.Module, state: dict, path: Path) -> None:
    rows = state.get("head.fc.weight")
    if rows is not None and hasattr(model, "grow"):
        model.grow(int(rows.shape[0]))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ConfigError(f"{path}: does not fit the run's model ({first})") from None


def _gate_config(cfg: Config) -> tuple[int, dict[str, Any]] | None:
    for i, plugin in enumerate(cfg.cl_strategy.get("plugins") or []):
        if plugin.get("type") == _GATE:
            return i, dict(plugin)
    return None


def _discovery_info(cfg: Config, payload: dict[str, Any]) -> DiscoveryInfo | None:
    """A discovery run's :class:`DiscoveryInfo` from its config and checkpoint (None otherwise)."""
    results = payload.get("results") or {}
    scenario = results.get("scenario") or {}
    known = scenario.get("known_classes")
    if not scenario.get("novel_classes") or known is None:
        return None
    record = RunRecord()  # today's checkpoints carry the record; older ones its legacy keys
    if payload.get("run_record") is not None:
        record.load_state_dict(payload["run_record"])
    elif results.get("experiences") is not None:
        record.load_legacy(results)
    log = record.discovery_log
    info = DiscoveryInfo(known_classes=list(known), mapping=training_mapping(log, known))
    ncd = payload.get("ncd") or {}
    if ncd.get("known_stats") is not None:
        info.stats = KnownClassStats.from_state_dict(ncd["known_stats"])
    gate = _gate_config(cfg)
    if gate is not None:
        index, options = gate
        info.score = str(options.get("score", "msp"))
        info.temperature = float(options.get("temperature", 1.0))
        info.score_kwargs = dict(options.get("score_kwargs") or {})
        saved = (payload.get("plugins") or {}).get(f"{index}:{_GATE}") or {}
        threshold = options.get("threshold", "calibrated")
        fixed = None if isinstance(threshold, str) else float(threshold)
        info.threshold = saved.get("calibrated_threshold", fixed)
        if threshold == "all":
            info.threshold = float("-inf")
    return info


class Predictor:
    """A trained model with its run's test pipeline and class names.

    The model's own logits are what it predicts; plugins that change evaluation outputs
    (post-hoc logit adjustment, test-time flipping) are not applied here: ``tools/test.py``
    evaluates with them.

    Args:
        model: the classifier (eval mode).
        transform: the run's test pipeline (raw image -> tensor).
        class_names: name of each class id.
        device: where the model runs.
        input_size: the training images' side; a PIL image of another size is resized to it when
            the test pipeline does not resize (None: never).
        discovery: set for discovery runs.
        run_dir: the run folder.
        checkpoint: the checkpoint file.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        transform: Any,
        class_names: Sequence[str],
        device: str | torch.device = "cpu",
        input_size: int | None = None,
        discovery: DiscoveryInfo | None = None,
        run_dir: Path | None = None,
        checkpoint: Path | None = None,
    ):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.transform = transform
        self.class_names = list(class_names)
        self.input_size = input_size
        self.discovery = discovery
        self.run_dir = run_dir
        self.checkpoint = checkpoint

    def name_of(self, class_id: int) -> str:
        """A class's name; discovered ids (rows past the known classes) are ``new #id``."""
        known = None if self.discovery is None else len(self.discovery.known_classes)
        if known is not None and class_id >= known:
            return f"new #{class_id}"
        if 0 <= class_id < len(self.class_names):
            return self.class_names[class_id]
        return f"class {class_id}"

    def _tensor(self, image: ImageInput) -> torch.Tensor:
        if isinstance(image, (str, os.PathLike)):
            image = open_image(image)
        if isinstance(image, Image.Image):
            image = image.convert("RGB")
            if self.input_size and image.size != (self.input_size, self.input_size):
                image = image.resize((self.input_size, self.input_size), Image.BILINEAR)
        elif not isinstance(image, torch.Tensor):
            raise ConfigError(
                f"images: expected a path, a PIL image or a tensor, got {type(image)}"
            )
        out = (
            self.transform(image)
            if self.transform is not None
            else TF.to_dtype(TF.to_image(image), torch.float32, scale=True)
        )
        return out if isinstance(out, torch.Tensor) else torch.as_tensor(out)

    @torch.inference_mode()
    def outputs(self, images: Sequence[ImageInput]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits [N, C], features [N, D] | None)`` of a batch of images, on the CPU."""
        x = torch.stack([self._tensor(img) for img in images]).to(self.device)
        logits = self.model(x).float().cpu()
        feats = getattr(self.model, "last_features", None)
        return logits, None if feats is None else feats.float().cpu()

    def predict(
        self, images: ImageInput | Iterable[ImageInput], topk: int = 5, batch_size: int = 256
    ) -> list[Prediction]:
        """Top-k classes with probabilities (and the discovery extras) of each image.

        Args:
            images: one image or several: file paths, PIL images, or tensors in the dataset's raw
                form (``uint8 [3, H, W]``).
            topk: how many classes to list.
            batch_size: images per forward pass.

        Raises:
            ConfigError: an unreadable or invalid image (naming it).
        """
        if isinstance(images, (str, os.PathLike, Image.Image)) or (
            isinstance(images, torch.Tensor) and images.dim() == 3
        ):
            images = [images]
        images = list(images)
        out: list[Prediction] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            logits, feats = self.outputs(chunk)
            sources = [_source(img, start + i) for i, img in enumerate(chunk)]
            out.extend(self._predictions(sources, logits, feats, topk))
        return out

    def _predictions(self, sources, logits, feats, topk) -> list[Prediction]:
        probs = torch.softmax(logits, dim=1)
        values, ids = probs.topk(min(topk, probs.shape[1]), dim=1)
        preds = [
            Prediction(
                source=src,
                topk=[(int(c), self.name_of(int(c)), float(v)) for c, v in zip(i_row, v_row)],
            )
            for src, i_row, v_row in zip(sources, ids.tolist(), values.tolist())
        ]
        if self.discovery is not None:
            self._add_discovery(preds, logits, feats)
        return preds

    def _add_discovery(self, preds: list[Prediction], logits, feats) -> None:
        info = self.discovery
        try:
            scores = info.novelty(logits, feats).tolist()
        except ValueError:  # a feature score without statistics: no score to give
            scores = [None] * len(preds)
        known = len(info.known_classes)
        for pred, score, top in zip(preds, scores, logits.argmax(dim=1).tolist()):
            pred.novelty_score = score
            if score is not None and info.threshold is not None:
                pred.pooled = bool(score > info.threshold)
            if top >= known:
                pred.discovered_id = int(top)
                pred.mapped_class = info.mapping.get(int(top))
                if pred.mapped_class is not None and pred.mapped_class < len(self.class_names):
                    pred.mapped_name = self.class_names[pred.mapped_class]


def _source(image: ImageInput, index: int) -> str:
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"image[{index}]"


def load_model(path: str | os.PathLike, device: str = "cpu") -> Predictor:
    """A :class:`Predictor` from a run folder (its latest checkpoint) or a checkpoint file.

    The run folder's ``config.py`` (the merged config the run saved) rebuilds the model and the test
    pipeline; the checkpoint gives the weights, the class names and, for discovery runs, the
    discovered ids' mapping and the gate's threshold.

    Raises:
        ConfigError: no checkpoint, no ``config.py`` beside it, or weights that do not fit.
    """
    from avalanche_ext import builders  # noqa: PLC0415
    from avalanche_ext.runner import resolve_device  # noqa: PLC0415

    ckpt, run_dir = find_checkpoint(path)
    config = run_dir / "config.py"
    if not config.is_file():
        raise ConfigError(f"{run_dir}: no config.py beside the checkpoint (not a run folder)")
    cfg = load_config(config)
    payload = load_checkpoint(ckpt, key=str(ckpt))
    model = builders.build_model(cfg.model)
    _load_weights(model, _model_state(payload, ckpt), ckpt)
    scenario = (payload.get("results") or {}).get("scenario") or {}
    scenario_cfg, _ = scenario_config(cfg)
    transform = build_pipeline(scenario_cfg.get("eval_transform"), "test_pipeline")
    names = scenario.get("class_names") or [
        f"class {i}" for i in range(int(getattr(model, "num_classes", 0)))
    ]
    size = scenario.get("image_size") or scenario_cfg.get("image_size")
    return Predictor(
        model,
        transform,
        names,
        resolve_device(device),
        input_size=int(size) if size else None,
        discovery=_discovery_info(cfg, payload),
        run_dir=run_dir,
        checkpoint=ckpt,
    )


def predict(
    model: str | os.PathLike | Predictor, images: ImageInput | Iterable[ImageInput], topk: int = 5
) -> list[Prediction]:
    """:meth:`Predictor.predict` with a run folder, a checkpoint or a loaded :class:`Predictor`."""
    predictor = model if isinstance(model, Predictor) else load_model(model)
    return predictor.predict(images, topk=topk)


def evaluate(
    config: str | os.PathLike | Config, checkpoint: str | os.PathLike, device: str = "cpu"
) -> dict[str, Any]:
    """Evaluates a checkpoint on a config's test stream and extra evaluation streams, with the
    config's metrics and plugins (their saved states loaded), as the run evaluated after training.

    Args:
        config: the config (a path or a loaded config); usually the run's ``config.py``.
        checkpoint: a checkpoint file or a run folder.
        device: ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        dict: ``stream_accuracy`` (stream name -> accuracy), ``metrics`` (every metric value),
        ``checkpoint``.

    Raises:
        ConfigError: a bad config or checkpoint.
    """
    from avalanche_ext import builders  # noqa: PLC0415
    from avalanche_ext.recorder import EvalLogitPadding  # noqa: PLC0415
    from avalanche_ext.runner import Experiment  # noqa: PLC0415

    ckpt, _ = find_checkpoint(checkpoint)
    cfg = config if isinstance(config, Config) else load_config(config)
    payload = load_checkpoint(ckpt, key=str(ckpt))
    exp = Experiment(cfg, device=device)
    _load_weights(exp.model, _model_state(payload, ckpt), ckpt)
    with warnings.catch_warnings():  # "No loggers specified": nothing to log on purpose
        warnings.simplefilter("ignore")
        evaluator = builders.build_evaluator(cfg.get("metrics"), [], exp.scenario)
    padding = EvalLogitPadding(exp.scenario.num_classes)
    strategy = builders.build_strategy(
        cfg.cl_strategy, exp.model, evaluator, exp.device, plugins=exp.plugins + [padding]
    )
    _load_plugin_states(exp.plugins, payload)
    strategy.ncd = DiscoveryState(num_known_classes=exp.scenario.initial_num_classes or 0)
    if payload.get("ncd") is not None:
        strategy.ncd.load_state_dict(payload["ncd"])
    bench = exp.scenario.benchmark
    accuracy: dict[str, float | None] = {}
    for stream in [*exp.eval_streams.values(), bench.test_stream]:
        strategy.eval(stream)
        accuracy[stream.name] = _stream_accuracy(evaluator.get_last_metrics(), stream.name)
    metrics = {
        k: float(v) for k, v in evaluator.get_last_metrics().items() if isinstance(v, (int, float))
    }
    return {"stream_accuracy": accuracy, "metrics": metrics, "checkpoint": str(ckpt)}


def _load_plugin_states(plugins: list, payload: dict[str, Any]) -> None:
    """Configured plugins come first in the runner's strategy, so their saved states are keyed
    ``"<index>:<class name>"`` by their position in the config."""
    saved = (payload.get("mid") or {}).get("plugins") or payload.get("plugins") or {}
    for i, plugin in enumerate(plugins):
        state = saved.get(f"{i}:{type(plugin).__name__}")
        if state is not None and hasattr(plugin, "load_state_dict"):
            plugin.load_state_dict(state)


def _stream_accuracy(metrics: dict[str, Any], name: str) -> float | None:
    key = f"Top1_Acc_Stream/eval_phase/{name}_stream"
    for metric, value in metrics.items():
        if metric == key or metric.startswith(key + "/"):
            return float(value)
    return None
