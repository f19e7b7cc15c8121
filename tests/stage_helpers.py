"""Call the stages as the steps do, with their typed arguments (biodiv_core.step_args), from short test calls.

Run settings not given keep their defaults (biodiv_core.run_settings.DEFAULTS) but seed 0; LightGBM gets one thread.
"""

from biodiv_core.data import prep as prep_stage
from biodiv_core.run_settings import DEFAULTS
from biodiv_core.stages import score as score_stage
from biodiv_core.stages import train as train_stage
from biodiv_core.stages import train_to_deploy as deploy_stage
from biodiv_core.step_args import DeployArgs, PrepArgs, ScoreArgs, TrainArgs

SITE, SPECIES = "everglades", "Cygnus buccinator"


def run_prep(features, species_dir, species, output, *, site=SITE, **values) -> dict:
    """run_prep on (features, species_dir) for ``species`` into ``output``; ``values``: other PrepArgs fields."""
    args = PrepArgs(
        site=site, species=species, features=str(features), species_dir=str(species_dir), output=str(output), **values
    )
    return prep_stage.run_prep(args)


def run_train(
    prepared, params_config, best_parameters, split, *, site=SITE, species=SPECIES, correlation_id=None, **settings
) -> dict:
    args = TrainArgs.from_settings(
        DEFAULTS.replace(**{"num_threads": 1, "seed": 0, **settings}),
        site=site,
        species=species,
        correlation_id=correlation_id,
        prepared=str(prepared),
        params_config=str(params_config),
        best_parameters=str(best_parameters),
        split=str(split),
    )
    return train_stage.run_train(args)


def _step_args(args_type, site, species, locations: dict, values: dict):
    """A step's arguments: paths as text, one LightGBM thread unless ``values`` say otherwise."""
    paths = {name: str(path) for name, path in locations.items()}
    return args_type(site=site, species=species, **paths, **{"num_threads": 1, **values})


def run_score(best_parameters, split, output, *, site=SITE, species=SPECIES, **values) -> dict:
    locations = {"best_parameters": best_parameters, "split": split, "output": output}
    return score_stage.run_score(_step_args(ScoreArgs, site, species, locations, values))


def run_train_to_deploy(prepared, best_parameters, output, *, site=SITE, species=SPECIES, **values) -> dict:
    locations = {"prepared": prepared, "best_parameters": best_parameters, "output": output}
    return deploy_stage.run_train_to_deploy(_step_args(DeployArgs, site, species, locations, values))
