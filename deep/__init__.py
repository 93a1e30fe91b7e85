"""deep: the distillation rules of ``distlab.rules`` inside an ensemble Soft Actor-Critic on gymnasium MuJoCo.

Modules: ``config`` (dataclasses with the papers' defaults), ``envs``, ``networks`` (batched ensemble
layers), ``kl`` (squashed-Gaussian densities and closed-form KL), ``replay``, ``sac``, ``distill`` (PIEKD's
step, the taxonomy rules mapped to SAC, DPD), ``election``, ``checkpoint``, ``train``, ``cli``, ``bench``.
Torch is imported by these modules, not by ``distlab``; ``distlab --help`` stays fast.
"""
