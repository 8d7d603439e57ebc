"""Objectives shared by the e-prop tests."""

from __future__ import annotations


class PerStepMSE:
    """Sum over steps of the squared error, averaged over steps: decomposes exactly over time.

    ``loss = sum_{t,b,i} (y - target)^2 / T`` and ``step_loss = sum_{b,i} (y_t - target_t)^2 / T``
    (unlike the library's ``MSE``, not averaged over batch and units, so gradients stay O(1)).
    """

    output = "y"

    def __call__(self, y, target):
        return ((y - target) ** 2).sum() / y.shape[0]

    def step_loss(self, y_t, target, t, steps):
        return ((y_t - target[t]) ** 2).sum() / steps
