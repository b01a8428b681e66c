"""Optimizers: `torch.optim.Optimizer` subclasses, their registrations, and exact state accounting.

Each optimizer's `Registration` is stated in its own module, beside its class; the built-ins are
registered here, explicitly, and installed packages add theirs through the `trainlab.optimizers`
entry-point group.
"""

from trainlab.optim import (
    adam_mini,
    ademamix,
    adopt,
    apollo,
    diffgrad,
    frugal,
    kron,
    lion,
    lowrank,
    muon,
    nadamw,
    normuon,
    prodigy,
    schedule_free,
    sign,
    soap,
    swan,
    torch_builtins,
)
from trainlab.optim.adam_mini import AdamMini
from trainlab.optim.adamw import AdamW
from trainlab.optim.ademamix import AdEMAMix
from trainlab.optim.adopt import ADOPT
from trainlab.optim.apollo import APOLLO
from trainlab.optim.base import ElementwiseOptimizer
from trainlab.optim.diffgrad import DiffGrad
from trainlab.optim.frugal import FRUGAL
from trainlab.optim.kron import Kron
from trainlab.optim.lion import Lion
from trainlab.optim.lowrank import FiraAdamW, GaLoreAdamW
from trainlab.optim.muon import Muon
from trainlab.optim.nadamw import NAdamW
from trainlab.optim.normuon import NorMuon
from trainlab.optim.owners import OwnerUpdates
from trainlab.optim.prodigy import Prodigy
from trainlab.optim.projection import SubspaceAdam
from trainlab.optim.projector import Projector
from trainlab.optim.registration import Registration
from trainlab.optim.registry import (
    available,
    build_kernels,
    create,
    entry,
    linear_update,
    register,
    state_bytes,
    total_state_bytes,
)
from trainlab.optim.schedule_free import ScheduleFreeAdamW
from trainlab.optim.sign import SignSGD, Signum
from trainlab.optim.soap import SOAP
from trainlab.optim.swan import SWAN

BUILTINS = (
    *torch_builtins.REGISTRATIONS,
    nadamw.REGISTRATION,
    lion.REGISTRATION,
    diffgrad.REGISTRATION,
    *sign.REGISTRATIONS,
    schedule_free.REGISTRATION,
    *lowrank.REGISTRATIONS,
    frugal.REGISTRATION,
    swan.REGISTRATION,
    ademamix.REGISTRATION,
    adopt.REGISTRATION,
    muon.REGISTRATION,
    soap.REGISTRATION,
    prodigy.REGISTRATION,
    adam_mini.REGISTRATION,
    apollo.REGISTRATION,
    normuon.REGISTRATION,
    kron.REGISTRATION,
)
for _registration in BUILTINS:
    register(_registration)

__all__ = [
    "ADOPT",
    "APOLLO",
    "AdEMAMix",
    "AdamMini",
    "AdamW",
    "BUILTINS",
    "DiffGrad",
    "ElementwiseOptimizer",
    "FRUGAL",
    "FiraAdamW",
    "GaLoreAdamW",
    "Kron",
    "Lion",
    "Muon",
    "NAdamW",
    "NorMuon",
    "OwnerUpdates",
    "Prodigy",
    "Projector",
    "Registration",
    "SOAP",
    "SWAN",
    "ScheduleFreeAdamW",
    "SignSGD",
    "Signum",
    "SubspaceAdam",
    "available",
    "build_kernels",
    "create",
    "entry",
    "linear_update",
    "register",
    "state_bytes",
    "total_state_bytes",
]
