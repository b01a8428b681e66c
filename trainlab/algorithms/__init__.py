"""Algorithms: the submission side of a race (optimizer + schedule + hyperparameters)."""

from trainlab.algorithms.base import AlgorithmSpec, TrainingAlgorithm
from trainlab.algorithms.registry import (DEFAULT_ALGORITHMS, available_algorithms, make_algorithm,
                                          parse_hparam_overrides, valid_hparams)

__all__ = ["AlgorithmSpec", "DEFAULT_ALGORITHMS", "TrainingAlgorithm", "available_algorithms",
           "make_algorithm", "parse_hparam_overrides", "valid_hparams"]
