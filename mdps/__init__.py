"""What the world is: finite MDPs and their generators (no learners here)."""

from .chain import chain_corridor
from .counterexample import oscillation_counterexample
from .garnet import garnet
from .gridworld import random_gridworld, random_gridworlds
from .tabular import MDPBatch, TabularMDP, stack

__all__ = ["TabularMDP", "MDPBatch", "stack", "random_gridworld", "random_gridworlds", "chain_corridor", "garnet", "oscillation_counterexample"]
