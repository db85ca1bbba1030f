"""Task and grid specs: read from YAML, validated, with model presets.

A *task* is what is served (a model × a workload); its ``task_id`` is a hash of the
canonical model + workload. A *grid* expands axes of task fields into many tasks.
"""

from metasel.spec.grid import GridSpec, load_grid_spec, parse_grid_spec
from metasel.spec.presets import MODEL_PRESETS
from metasel.spec.task import (Budget, HardwareSpec, LengthDist, ModelSpec, Objective, TaskSpec, WorkloadSpec,
                               load_task_spec, parse_hardware, parse_length, parse_task_spec, read_yaml, task_id_of)

__all__ = ["Budget", "GridSpec", "HardwareSpec", "LengthDist", "MODEL_PRESETS", "ModelSpec", "Objective", "TaskSpec",
           "WorkloadSpec", "load_grid_spec", "load_task_spec", "parse_grid_spec", "parse_hardware", "parse_length",
           "parse_task_spec", "read_yaml", "task_id_of"]
