"""What an asset asks the step launcher to run (mode-independent), and the command line it becomes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StepSpec:
    step: str  # "prep" | "train" | "score" | "train_to_deploy"
    inputs: dict[str, str]  # CLI option (without --) -> input location (path or URI)
    outputs: dict[str, str]  # CLI option -> output location chosen by output_location()
    params: dict[str, str | int | float]  # other CLI options
    asset_keys: dict[str, str]  # output CLI option -> asset key it materializes
    correlation_id: str
    # Extra environment for the step (e.g. BIODIV_NUM_THREADS); modes add their own on top.
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.step not in STEPS:
            raise ValueError(f"Unknown step {self.step!r}: use one of {sorted(STEPS)}.")
        missing = set(self.asset_keys) - set(self.outputs)
        if missing:
            raise ValueError(
                f"asset_keys name outputs {sorted(missing)} that are not in outputs {sorted(self.outputs)}."
            )

    @property
    def module(self) -> str:
        return f"azureml_steps.{self.step}"

    def arguments(self, inputs: dict[str, str] | None = None, outputs: dict[str, str] | None = None) -> list[str]:
        """``--opt value`` pairs; a mode may pass its own input/output locations (e.g. job mount paths)."""
        args: list[str] = []
        for mapping in (inputs or self.inputs, outputs or self.outputs, self.params):
            for option, value in mapping.items():
                args += [f"--{option.replace('_', '-')}", str(value)]
        args += ["--correlation-id", self.correlation_id]
        return args


STEPS = frozenset({"prep", "train", "score", "train_to_deploy"})
