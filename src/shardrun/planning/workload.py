"""What the planner plans for: the work, in units, and how long one unit takes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    task: str
    units: int
    seconds: float


@dataclass(frozen=True)
class Workload:
    """The work, and how long one unit of it takes. A unit is what the splitter counts."""

    units: int
    unit_seconds: float
    app_start_seconds: float = 0.0
    job_per_task: int | None = 1  # None: the job file says "auto" (the planner chooses)
    unit_name: str = "units"
    how: str = "given"
    samples: tuple[Sample, ...] = ()
