"""Needs a package that is not installed, listed in requirements.txt beside it."""

import trainlab_absent_test_package  # noqa: F401


def get_batch_size(workload_name):
    return 128
