"""Algorithms: the submission side of a race (optimizer + schedule + hyperparameters)."""

from trainlab.algorithms.base import AlgorithmSpec, TrainingAlgorithm, check_applies
from trainlab.algorithms.registry import DEFAULT_ALGORITHMS, make_algorithm, parse_hparam_overrides, valid_hparams

__all__ = [
    "AlgorithmSpec",
    "check_applies",
    "DEFAULT_ALGORITHMS",
    "TrainingAlgorithm",
    "make_algorithm",
    "parse_hparam_overrides",
    "valid_hparams",
]
