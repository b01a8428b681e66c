"""Registry entries of the elementwise optimizers (Lion, diffGrad, signSGD/Signum, Schedule-Free)."""

from __future__ import annotations

from trainlab.optim.base import ElementwiseOptimizer
from trainlab.optim.diffgrad import DiffGrad
from trainlab.optim.lion import Lion
from trainlab.optim.registry import register
from trainlab.optim.schedule_free import ScheduleFreeAdamW
from trainlab.optim.sign import SignSGD, Signum

__all__ = ["DiffGrad", "ElementwiseOptimizer", "Lion", "ScheduleFreeAdamW", "SignSGD", "Signum"]

register("lion", Lion, "Lion: sign of an interpolated momentum, decoupled decay (4 B/param state)",
         "Chen et al., Symbolic Discovery of Optimization Algorithms, NeurIPS 2023 (arXiv 2302.06675)")
register("diffgrad", DiffGrad, "diffGrad: Adam with AbsSig friction on the first moment, coupled L2",
         "Dubey et al., diffGrad: An Optimization Method for Convolutional Neural Networks, "
         "IEEE TNNLS 2020 (arXiv 1909.11015)")
register("signsgd", SignSGD, "signSGD: step along the sign of the gradient (stateless)",
         "Bernstein et al., signSGD: Compressed Optimisation for Non-Convex Problems, ICML 2018 "
         "(arXiv 1802.04434)")
register("signum", Signum, "Signum: step along the sign of an exponential momentum",
         "Bernstein et al., signSGD: Compressed Optimisation for Non-Convex Problems, ICML 2018 "
         "(arXiv 1802.04434)")
register("sfadamw", ScheduleFreeAdamW,
         "Schedule-Free AdamW: no decay schedule; evaluate at the averaged point (optimizer.eval())",
         "Defazio et al., The Road Less Scheduled, NeurIPS 2024 (arXiv 2405.15682)")
