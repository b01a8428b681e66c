"""Datasets behind the built-in workloads, all available offline.

`mnist1d` generates MNIST-1D procedurally; `text` holds the pinned Shakespeare corpus fetched once at
set-up; `formats` reads MNIST (IDX) and CIFAR-10 (pickle batches) files a user already has.
"""


def prepare_all(quiet: bool = False) -> None:
    """The set-up step (`trainlab fetch-data`, run by `make setup`): fetch the pinned text corpus and
    generate the MNIST-1D cache once, so that nothing is downloaded or generated at run time."""
    from trainlab.workloads.data.mnist1d import MNIST1DSpec, load_mnist1d
    from trainlab.workloads.data.text import fetch_shakespeare

    fetch_shakespeare(quiet=quiet)
    load_mnist1d(MNIST1DSpec())
