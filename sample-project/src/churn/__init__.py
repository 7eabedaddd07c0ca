"""A gradient-boosted churn model: `train` fits one, `evaluate` scores it."""

from churn.model import evaluate, train

__all__ = ["evaluate", "train"]
