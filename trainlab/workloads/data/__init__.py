"""Datasets behind the built-in workloads, all available offline.

`mnist1d` generates MNIST-1D procedurally; `text` holds the pinned Shakespeare corpus fetched once at
set-up; `formats` reads MNIST (IDX) and CIFAR-10 (pickle batches) files a user already has.
"""
