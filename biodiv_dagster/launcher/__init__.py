"""Step launchers: `base.StepLauncher` and its backends `local.LocalStepLauncher`, `azureml.AzureMLStepLauncher`."""
