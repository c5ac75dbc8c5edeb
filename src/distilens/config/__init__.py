"""The run config: typed models (:mod:`.schema`) and reading them (:mod:`.files`).

Every key has a default, so an empty file (or no file) is the digits demo. YAML is read
with ``yaml.safe_load`` only: no tags, nothing that runs code.

Example:
    >>> cfg = load_config(None, overrides=["distill.epochs=5", "student.args.width=4"])
    >>> cfg.distill.epochs
    5
"""

from .files import DEMO_NAME, apply_overrides, check_override_keys, default_run_name, dump_config, load_config, validate_config
from .schema import (
    DEFAULT_MEMORY_BUDGET,
    CacheConfig,
    DataConfig,
    DistillConfig,
    ExplainConfig,
    LossConfig,
    OptimizerConfig,
    ReportConfig,
    RunConfig,
    RuntimeConfig,
    StoredViews,
    StudentConfig,
    TeacherConfig,
    TrainConfig,
    TransferConfig,
    default_args,
)

__all__ = [
    "RunConfig", "DataConfig", "TeacherConfig", "StudentConfig", "TrainConfig", "OptimizerConfig", "LossConfig",
    "CacheConfig", "DistillConfig", "StoredViews", "TransferConfig", "ExplainConfig", "ReportConfig", "RuntimeConfig",
    "load_config", "apply_overrides", "check_override_keys", "validate_config", "default_run_name", "dump_config",
    "default_args", "DEMO_NAME", "DEFAULT_MEMORY_BUDGET",
]
