"""Workflows: a YAML schema (pydantic), the Workflow object and its run."""

from ._run import RunResult
from ._schema import WorkflowError, WorkflowSpec
from ._workflow import Workflow

__all__ = ["RunResult", "Workflow", "WorkflowError", "WorkflowSpec"]
