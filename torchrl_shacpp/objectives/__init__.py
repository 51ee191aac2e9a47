"""TorchRL loss modules for SHAC-family algorithms."""

from torchrl_shacpp.objectives.actor import SHACActorLoss
from torchrl_shacpp.objectives.models import RewardModelLoss, TransitionModelLoss, WorldModelLoss
from torchrl_shacpp.objectives.value import TDLambdaValueLoss

__all__ = ["RewardModelLoss", "SHACActorLoss", "TDLambdaValueLoss", "TransitionModelLoss", "WorldModelLoss"]
