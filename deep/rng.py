"""Random draws of the deep backend through one door, so that stacked runs and cross-device checks reproduce.

Every random tensor of a run (minibatch indices, reparameterisation noise, phase minibatches) is drawn by
:func:`normal` or :func:`randint` with the run's ``generator``, which is one of:

* a ``torch.Generator`` (a single run, as always);
* :class:`SeedGenerators`: S independent runs stacked along the leading (member) axis, as
  ``distlab train --seeds`` does. A stacked tensor has S equal blocks of rows (run s owns block s), and
  block s is drawn from run s's own generator with the shape a single run draws. Since a run's draws
  happen in the same order as when it runs alone, run s of a stack consumes exactly the random numbers
  of the single run with seed s: the stacked runs' updates equal the separate runs' (up to float
  rounding of the batched kernels). A block whose run is inactive (e.g. its election skipped a phase)
  is filled with zeros and its generator is not advanced, as the single run draws nothing then;
* :class:`HostGenerator`: draws on a CPU generator and copies the result to the device. A CPU run and a
  CUDA run given the same host generator see the same random numbers, which makes a CUDA update
  comparable with a CPU update (the CUDA generator's Philox stream differs from the CPU's Mersenne
  twister, so device generators can never be compared). Tests only: each draw is a host->device copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["SeedGenerators", "HostGenerator", "normal", "randint"]


class SeedGenerators:
    """The generators of S stacked runs (one ``torch.Generator`` each), optionally with some runs inactive."""

    def __init__(self, generators: Sequence[torch.Generator], active: Sequence[bool] | None = None):
        self.generators = list(generators)
        self.active = tuple(True for _ in self.generators) if active is None else tuple(bool(a) for a in active)
        if len(self.active) != len(self.generators):
            raise ValueError(f"{len(self.active)} activity flags for {len(self.generators)} generators")

    def __len__(self) -> int:
        return len(self.generators)

    def only(self, active: Sequence[bool]) -> SeedGenerators:
        """The same generators with only the runs flagged in ``active`` drawing."""
        return SeedGenerators(self.generators, active)

    def rows_per_run(self, rows: int) -> int:
        if rows % len(self) != 0:
            raise ValueError(f"a stacked draw needs a leading axis divisible by the {len(self)} runs; got {rows} rows")
        return rows // len(self)

    def of_row(self, row: int, rows: int) -> torch.Generator | None:
        """The generator of stacked row ``row`` (of ``rows``), or None if its run is inactive."""
        run = row // self.rows_per_run(rows)
        return self.generators[run] if self.active[run] else None

    def _blocks(self, shape, draw, zeros) -> torch.Tensor:
        per = self.rows_per_run(shape[0])
        block = (per, *shape[1:])
        return torch.cat([draw(block, g) if on else zeros(block) for g, on in zip(self.generators, self.active)])

    def normal(self, shape, device, dtype) -> torch.Tensor:
        return self._blocks(tuple(shape), lambda b, g: torch.randn(b, device=device, dtype=dtype, generator=g),
                            lambda b: torch.zeros(b, device=device, dtype=dtype))

    def randint(self, high: int, shape, device) -> torch.Tensor:
        return self._blocks(tuple(shape), lambda b, g: torch.randint(0, high, b, device=device, generator=g),
                            lambda b: torch.zeros(b, device=device, dtype=torch.long))


class HostGenerator:
    """Draws on a CPU ``torch.Generator`` and copies them to the requested device (cross-device tests)."""

    def __init__(self, seed: int):
        self.cpu = torch.Generator().manual_seed(int(seed))

    def normal(self, shape, device, dtype) -> torch.Tensor:
        return torch.randn(tuple(shape), dtype=dtype, generator=self.cpu).to(device)

    def randint(self, high: int, shape, device) -> torch.Tensor:
        return torch.randint(0, high, tuple(shape), generator=self.cpu).to(device)

    def randperm(self, n: int, device) -> torch.Tensor:
        return torch.randperm(n, generator=self.cpu).to(device)


def normal(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    """Standard normal draws of ``shape`` from ``generator`` (a torch.Generator, SeedGenerators or HostGenerator)."""
    if isinstance(generator, (SeedGenerators, HostGenerator)):
        return generator.normal(shape, device, dtype)
    return torch.randn(tuple(shape), device=device, dtype=dtype, generator=generator)


def randint(high: int, shape, generator, device) -> torch.Tensor:
    """Integers uniform on {0, ..., high - 1} of ``shape`` from ``generator`` (as :func:`normal`)."""
    if isinstance(generator, (SeedGenerators, HostGenerator)):
        return generator.randint(high, shape, device)
    return torch.randint(0, high, tuple(shape), device=device, generator=generator)
