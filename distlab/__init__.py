"""distlab: policy distillation in reinforcement learning, exactly (tabular) and at scale (deep)."""

__version__ = "0.1.0"
