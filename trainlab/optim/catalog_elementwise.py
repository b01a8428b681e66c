"""Registry entries of the elementwise optimizers (Lion, diffGrad, signSGD/Signum, Schedule-Free)."""

from __future__ import annotations

from trainlab.optim.base import ElementwiseOptimizer
from trainlab.optim.diffgrad import DiffGrad
from trainlab.optim.lion import Lion
from trainlab.optim.registry import register
from trainlab.optim.schedule_free import ScheduleFreeAdamW
from trainlab.optim.sign import SignSGD, Signum

__all__ = ["DiffGrad", "ElementwiseOptimizer", "Lion", "ScheduleFreeAdamW", "SignSGD", "Signum"]

# Race defaults (workload-agnostic, used where nothing was tuned): each paper's recommendation,
# stated relative to AdamW's race defaults (lr 4e-3, weight decay 0.01) where the paper does so.
register("lion", Lion, "Lion: sign of an interpolated momentum, decoupled decay (4 B/param state)",
         "Chen et al., Symbolic Discovery of Optimization Algorithms, NeurIPS 2023 (arXiv 2302.06675)",
         # the paper: lr 3-10x smaller than AdamW's and decay 3-10x larger, so lr * wd stays equal
         race_defaults={"lr": 4e-4, "betas": (0.9, 0.99), "weight_decay": 0.1, "warmup_fraction": 0.05})
register("diffgrad", DiffGrad, "diffGrad: Adam with AbsSig friction on the first moment, coupled L2",
         "Dubey et al., diffGrad: An Optimization Method for Convolutional Neural Networks, "
         "IEEE TNNLS 2020 (arXiv 1909.11015)",
         # an Adam variant: AdamW's race lr, the paper's betas and no decay (its coupled L2 is off)
         race_defaults={"lr": 4e-3, "betas": (0.9, 0.999), "weight_decay": 0.0, "warmup_fraction": 0.05})
# sign methods: the paper tunes lr per task; every coordinate moves by lr, as Lion's, so Lion's lr
register("signsgd", SignSGD, "signSGD: step along the sign of the gradient (stateless)",
         "Bernstein et al., signSGD: Compressed Optimisation for Non-Convex Problems, ICML 2018 "
         "(arXiv 1802.04434)",
         race_defaults={"lr": 4e-4, "weight_decay": 0.0, "warmup_fraction": 0.05})
register("signum", Signum, "Signum: step along the sign of an exponential momentum",
         "Bernstein et al., signSGD: Compressed Optimisation for Non-Convex Problems, ICML 2018 "
         "(arXiv 1802.04434)",
         race_defaults={"lr": 4e-4, "momentum": 0.9, "weight_decay": 0.0, "warmup_fraction": 0.05})
register("sfadamw", ScheduleFreeAdamW,
         "Schedule-Free AdamW: no decay schedule; evaluate at the averaged point (optimizer.eval())",
         "Defazio et al., The Road Less Scheduled, NeurIPS 2024 (arXiv 2405.15682)",
         # no decay schedule; warm-up as the paper recommends, at its AlgoPerf self-tuning
         # submission's values (warm-up 2 % of the steps, beta2 0.9955, wd 0.0812, r 0.75)
         schedule="constant",
         race_defaults={"lr": 0.0025, "betas": (0.9, 0.9955), "weight_decay": 0.0812, "r": 0.75,
                        "warmup_fraction": 0.02})
