"""Imports a helper its folder does not have (helpers/ exists, helpers/missing.py does not)."""

from submissions.team_y.broken_import.helpers.missing import step  # noqa: F401


def get_batch_size(workload_name):
    return 128
