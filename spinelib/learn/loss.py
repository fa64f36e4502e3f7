"""The paper's L1 loss on crop-coordinate outputs, each output weighted, and its mean over a dataset.

Outputs and targets are ``(B, 6 K + 2)`` crop coordinates (:mod:`spinelib.learn.config`); the
per-output weights come from :meth:`spinelib.learn.train.TrainConfig.loss_weights` (the last
two outputs, the extent, may weigh more than a curve value).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..errors import InvalidArgumentError, ShapeError

__all__ = ["l1_loss", "evaluate_loss"]


def l1_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None, *,
            reduction: str = "mean") -> torch.Tensor:
    """L1 loss of ``(B, D)`` outputs, each of the ``D`` outputs weighted by ``weights (D,)``.

    ``"mean"`` divides by ``B * weights.sum()`` (the plain mean when ``weights`` is None);
    ``"sum"`` is the weighted sum.

    Raises
    ------
    ShapeError
        ``pred`` and ``target`` differ in shape, or ``weights`` is not ``(D,)``.
    """
    if pred.shape != target.shape or pred.ndim != 2:
        raise ShapeError(f"pred and target must both be (B, D), got {tuple(pred.shape)} and {tuple(target.shape)}")
    if weights is not None and tuple(weights.shape) != (pred.shape[1],):
        raise ShapeError(f"weights must have shape ({pred.shape[1]},), got {tuple(weights.shape)}")
    if weights is None:
        return nn.functional.l1_loss(pred, target, reduction=reduction)
    if reduction not in ("mean", "sum"):
        raise InvalidArgumentError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    err = ((pred - target).abs() * weights.to(pred.device, pred.dtype)).sum()
    return err / (pred.shape[0] * weights.sum()) if reduction == "mean" else err


@torch.no_grad()
def evaluate_loss(model: nn.Module, dataset: Dataset, *, batch_size: int, device: torch.device,
                  weights: torch.Tensor | None = None) -> float:
    """Mean L1 loss of ``model`` over ``dataset`` (:func:`l1_loss`'s weights; every sample counts once)."""
    model.eval()
    total, count = 0.0, 0.0
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        x, y = x.to(device), y.to(device)
        total += l1_loss(model(x), y, weights, reduction="sum").item()
        count += y.numel() if weights is None else y.shape[0] * float(weights.sum())
    if count == 0:
        raise InvalidArgumentError("validation dataset is empty")
    return total / count
