"""deep: the distillation rules of ``distlab.rules`` inside an ensemble Soft Actor-Critic on gymnasium MuJoCo.

Modules, bottom to top (no import circles): ``config`` (dataclasses with the papers' defaults; the CLI
options are generated from them), ``envs``, ``networks`` (batched ensemble layers), ``kl`` (squashed-Gaussian
densities and closed-form KL), ``replay``, ``checkpoint`` (atomic files, clear errors), ``sac`` (the SAC
update), ``distill`` (PIEKD's step, the taxonomy rules mapped to SAC, DPD's weights; phases), ``election``,
``methods`` (one table entry of named step functions per ``--method``), ``state`` (the checkpointable run
state), ``teacher_file`` (exported frozen teachers), ``train`` (the visible loop), ``cli``, ``bench``.
Torch is imported by these modules, not by ``distlab``; ``distlab --help`` stays fast.
"""
