"""What an asset asks a step launcher to run: the step's typed arguments, serialized the same for every backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from biodiv_core.step_args import StepArgs


@dataclass(frozen=True)
class StepSpec:
    args: StepArgs  # the step's contract (biodiv_core.step_args): partition, locations, parameters
    # Extra environment for the step (e.g. BIODIV_NUM_THREADS); backends add their own on top.
    env: dict[str, str] = field(default_factory=dict)

    @property
    def step(self) -> str:
        return self.args.step

    @property
    def module(self) -> str:
        return f"azureml_steps.{self.step}"

    @property
    def correlation_id(self) -> str:
        return str(self.args.correlation_id or "")

    @property
    def inputs(self) -> dict[str, str]:
        """Input field -> location (path or URI)."""
        return self.args.inputs()

    @property
    def outputs(self) -> dict[str, str]:
        """Output field -> location chosen by the launcher's output_location()."""
        return self.args.outputs()

    @property
    def asset_keys(self) -> dict[str, str]:
        """Output field -> asset key it materializes."""
        return self.args.asset_keys()

    @property
    def params(self) -> dict[str, Any]:
        return self.args.params()

    def arguments(self, inputs: dict[str, str] | None = None, outputs: dict[str, str] | None = None) -> list[str]:
        """The step's argv; a backend may pass its own input/output locations by field (e.g. job mount paths)."""
        return self.args.to_argv({**(inputs or {}), **(outputs or {})})
