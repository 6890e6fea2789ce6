"""What a run has measured so far: one typed record that the runner fills after each experience and
the checkpointer saves and restores, instead of private keys riding inside the results dict."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from avalanche_ext.utils.jsonable import to_jsonable

__all__ = ["RunRecord"]

# Checkpoints written before the record existed kept the run-only fields inside ``results`` under
# an underscore-prefixed name: {old name: record field}. The floor was ``{"predictions": [...]}``.
_LEGACY_FIELDS = {
    "pca_prev": "last_per_class_accuracy",
    "floor": "floor_predictions",
    "discovery_log": "discovery_log",
}


@dataclass
class RunRecord:
    """The measurements of one run, in the order results.json lists them.

    Attributes:
        header: what the run is (config file, folders, seed, device, versions, scenario); rebuilt
            from the config on resume, never checkpointed.
        experiences: one entry per trained experience (times, image counts, evaluation metrics).
        accuracy_matrix: row ``i``: the test accuracy of every experience after training
            experience ``i`` (discovered ids mapped to classes in a discovery run).
        per_class_accuracy_before_update: per-class test accuracy before the last experience of a
            discovery run (the report's before/after figure).
        last_per_class_accuracy: per-class test accuracy after the latest experience (becomes
            ``per_class_accuracy_before_update`` when the last experience starts).
        floor_predictions: test predictions of the model before the first discovery update (the
            no-discovery floor every discovery convention is scored against).
        discovery_log: what the discovery plugins did on each experience with hidden labels.
        history: one entry per trained epoch (training loss and accuracy, periodic evaluation),
            filled by :class:`avalanche_ext.history.EpochHistory`, which holds this very list.
    """

    header: dict[str, Any] = field(default_factory=dict)
    experiences: list[dict[str, Any]] = field(default_factory=list)
    accuracy_matrix: list[list[float | None]] = field(default_factory=list)
    per_class_accuracy_before_update: list[float | None] | None = None
    last_per_class_accuracy: list[float | None] | None = None
    floor_predictions: list[int] | None = None
    discovery_log: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    _PUBLIC = ("experiences", "accuracy_matrix", "per_class_accuracy_before_update", "history")

    def results(self) -> dict[str, Any]:
        """The results dict so far: the header, then what results.json reports per experience."""
        return {**self.header, **{name: getattr(self, name) for name in self._PUBLIC}}

    def floor(self) -> dict[str, Any] | None:
        """The floor in the form :func:`avalanche_ext.metrics.discovery.discovery_summary` takes."""
        return None if self.floor_predictions is None else {"predictions": self.floor_predictions}

    def state_dict(self) -> dict[str, Any]:
        """Every measured field (not the header) as plain JSON types, for a checkpoint."""
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        state.pop("header")
        return json.loads(json.dumps(to_jsonable(state)))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for f in dataclasses.fields(self):
            if f.name != "header" and f.name in state:
                current = getattr(self, f.name)
                if isinstance(current, list) and isinstance(state[f.name], list):
                    current[:] = state[f.name]  # in place: plugins may hold the list
                else:
                    setattr(self, f.name, state[f.name])

    def load_legacy(self, results: dict[str, Any]) -> None:
        """Reads the ``results`` of a checkpoint written before the record existed."""
        self.experiences = results["experiences"]
        self.accuracy_matrix = results["accuracy_matrix"]
        self.per_class_accuracy_before_update = results.get("per_class_accuracy_before_update")
        for old, name in _LEGACY_FIELDS.items():
            value = results.get(f"_{old}")
            if name == "floor_predictions" and value is not None:
                value = value.get("predictions")
            if name == "discovery_log":
                value = value or []
            setattr(self, name, value)
