"""`biodiv azureml upload-data | register-env`: prepare a workspace (README 'Run on Azure ML')."""

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "azureml",
        help="Prepare an AzureML workspace: register data assets and the step environment.",
        description="Workspace from AZUREML_SUBSCRIPTION_ID, AZUREML_RESOURCE_GROUP, AZUREML_WORKSPACE "
        "(credentials: DefaultAzureCredential, e.g. `az login`).",
    )
    commands = parser.add_subparsers(dest="azureml_command", required=True)

    upload = commands.add_parser(
        "upload-data",
        help="Register a local data store's versions as AzureML data assets (uri_folder).",
        description="Each <root>/<site>-training-features|species/<version>/ folder becomes data asset "
        "<site>-training-...:<version> (uploaded to the workspace's default datastore); existing versions are kept.",
    )
    upload.add_argument("--root", required=True, help="data store root folder (DESIGN section 3 layout)")
    upload.set_defaults(handler=upload_data)

    env = commands.add_parser(
        "register-env",
        help="Register azureml_steps/environment.yml as the step environment (version = content hash).",
    )
    env.set_defaults(handler=register_env)


def _settings():
    from biodiv_dagster.azure_settings import AzureMLSettings

    # The Pipes channel is not needed here; only the workspace settings are read.
    return AzureMLSettings.from_env()


def upload_data(args: argparse.Namespace) -> int:
    from biodiv_dagster.azure_data import upload_data as upload

    summary = upload(_settings().ml_client(), args.root)
    registered = sum(item["status"] == "registered" for item in summary)
    print(f"{registered} data asset version(s) registered, {len(summary) - registered} already there")
    return 0


def register_env(args: argparse.Namespace) -> int:
    from biodiv_dagster.azure_env import register_environment

    settings = _settings()
    reference, created = register_environment(settings.ml_client(), settings.environment_name)
    print(f"{reference} {'registered' if created else 'already registered'}")
    return 0
