"""Registry entries of the elementwise optimizers (Lion, diffGrad, signSGD/Signum, Schedule-Free)."""
