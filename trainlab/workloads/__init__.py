"""Workloads: the fixed side of a race (model, data, loss, metric, target, budget)."""

from trainlab.workloads.base import ClassificationWorkload, Option, Splits, Workload
from trainlab.workloads.registry import DEFAULT_WORKLOADS, builtin_names, create_workload, rebuild_args, workload_class

__all__ = [
    "DEFAULT_WORKLOADS",
    "ClassificationWorkload",
    "Option",
    "Splits",
    "Workload",
    "builtin_names",
    "create_workload",
    "rebuild_args",
    "workload_class",
]
