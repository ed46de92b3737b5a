"""Phase configuration: pydantic models, the phase catalog and the loader. No CDK imports."""

from aipp_contract.messages import TaskType
from phases.loader import ConfigError, load_config
from phases.models import Env, Phase, PhaseConfig

__all__ = ["ConfigError", "Env", "Phase", "PhaseConfig", "TaskType", "load_config"]
