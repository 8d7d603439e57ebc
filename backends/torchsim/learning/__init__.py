"""Learning with the torch backend: algorithms, objectives, metrics, regularisers and the trainer.

* algorithms (:mod:`.algorithms`, :mod:`.eprop`): :class:`BPTT`, :class:`TBPTT`, :class:`EProp`,
  each ``train_step(model, inputs, target, objective, optimizer) -> StepResult``;
* objectives (:mod:`.losses`): :class:`CrossEntropyOverTime`, :class:`MSE`;
* metrics (:mod:`.metrics`): :func:`accuracy`, :func:`confusion_matrix`, :func:`pvar`, :func:`mse`;
* regularisers (:mod:`.regularizers`): :class:`FiringRateTarget`, :class:`WeightL1`, :class:`WeightL2`;
* the trainer (:mod:`.trainer`) with callbacks (:mod:`.callbacks`), checkpoints
  (:mod:`.checkpoint`) and the :class:`History` (:mod:`.history`).

See ``docs/training.md``.
"""

from __future__ import annotations

from .algorithms import BPTT, TBPTT, Objective, StepResult, total_loss
from .batches import Batches
from .callbacks import Callback, EarlyStopping, LambdaCallback, StopAtThreshold, StopOnNonFinite, TimeLimit
from .checkpoint import latest_checkpoint, load_checkpoint, remove_stale_temp_files, save_checkpoint
from .eprop import AdaptiveFeedback, EProp, RandomFeedback, SymmetricFeedback
from .history import History
from .losses import MSE, CrossEntropyOverTime
from .metrics import Accuracy, MSEMetric, PVar, accuracy, class_scores, confusion_matrix, mse, predict, pvar
from .regularizers import FiringRateTarget, WeightL1, WeightL2, prepare_regularizers
from .trainer import Trainer

__all__ = [
    "BPTT",
    "TBPTT",
    "EProp",
    "SymmetricFeedback",
    "RandomFeedback",
    "AdaptiveFeedback",
    "Objective",
    "StepResult",
    "total_loss",
    "CrossEntropyOverTime",
    "MSE",
    "accuracy",
    "confusion_matrix",
    "class_scores",
    "predict",
    "mse",
    "pvar",
    "Accuracy",
    "MSEMetric",
    "PVar",
    "FiringRateTarget",
    "WeightL1",
    "WeightL2",
    "prepare_regularizers",
    "Trainer",
    "Batches",
    "History",
    "Callback",
    "StopOnNonFinite",
    "EarlyStopping",
    "StopAtThreshold",
    "TimeLimit",
    "LambdaCallback",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "remove_stale_temp_files",
]
