"""Small synthetic species data with a known niche, for the model-quality tests (issue 7).

Not collected by pytest (no ``test_`` prefix); imported by tests/test_spatial_cv.py and friends.
"""

import lightgbm as lgb
import numpy as np
import pandas as pd

TEMPERATURE_SLOPE = 1.5  # logit per standard deviation of temperature: presence rises with warmth
PRECIPITATION_OPTIMUM = 0.3  # standardised precipitation at which presence peaks


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def clustered_sdm(
    n_clusters: int = 30,
    per_cluster: int = 50,
    residual: float = 2.0,
    seed: int = 0,
    scattered: int = 0,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Points in tight clusters (~5 km) over ~550 x 480 km, a known niche plus a per-cluster effect.

    Returns (frame, y, truth): frame has gbifid, decimallatitude, decimallongitude, temperature,
    precipitation, soil (a cluster-level covariate the species ignores: it lets random CV recognise a
    cluster and its unmodelled effect), noise and land_cover; truth is the presence probability.
    ``residual`` is the standard deviation of the cluster effect on the logit (0 = the niche alone).
    """
    rng = np.random.default_rng(seed)
    centre_lat = rng.uniform(40.0, 45.0, n_clusters)
    centre_lon = rng.uniform(-110.0, -104.0, n_clusters)
    cluster = np.repeat(np.arange(n_clusters), per_cluster)
    lat = centre_lat[cluster] + rng.normal(0.0, 0.03, len(cluster))
    lon = centre_lon[cluster] + rng.normal(0.0, 0.04, len(cluster))
    if scattered:
        lat = np.concatenate([lat, rng.uniform(40.0, 45.0, scattered)])
        lon = np.concatenate([lon, rng.uniform(-110.0, -104.0, scattered)])
        cluster = np.concatenate([cluster, np.full(scattered, -1)])
    n = len(lat)
    temperature = 20.0 - 2.0 * (lat - 40.0) + 1.5 * np.sin(lon) + rng.normal(0.0, 1.5, n)
    precipitation = 600.0 + 80.0 * np.cos(2.0 * lat) + 60.0 * (lon + 107.0) + rng.normal(0.0, 60.0, n)
    soil_by_cluster = rng.normal(0.0, 1.0, n_clusters + 1)
    soil = soil_by_cluster[cluster] + rng.normal(0.0, 0.02, n)
    effect = np.append(rng.normal(0.0, residual, n_clusters), 0.0)[cluster] if residual else np.zeros(n)
    z_temp = (temperature - temperature.mean()) / temperature.std()
    z_prec = (precipitation - precipitation.mean()) / precipitation.std()
    cover = rng.choice(["forest", "grassland", "wetland"], n)
    cover_effect = pd.Series(cover).map({"forest": 0.5, "grassland": 0.0, "wetland": -0.5}).to_numpy()
    logit = TEMPERATURE_SLOPE * z_temp - 1.5 * (z_prec - PRECIPITATION_OPTIMUM) ** 2 + cover_effect + effect + 0.3
    truth = sigmoid(logit)
    y = (rng.random(n) < truth).astype(int)
    frame = pd.DataFrame(
        {
            "gbifid": 3_000_000_000 + np.arange(n, dtype=np.int64) * 7,
            "decimallatitude": lat,
            "decimallongitude": lon,
            "temperature": temperature,
            "precipitation": precipitation,
            "soil": soil,
            "noise": rng.normal(0.0, 1.0, n),
            "land_cover": pd.Categorical(cover),
        }
    )
    return frame, y, truth


PREDICTORS = ["temperature", "precipitation", "soil", "noise", "land_cover"]
PARAMS = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_child_samples": 10,
    "verbose": -1,
    "num_threads": 1,
    "seed": 0,
}


def train_booster(X: pd.DataFrame, y: np.ndarray, rounds: int = 100) -> lgb.Booster:
    return lgb.train(PARAMS, lgb.Dataset(X, label=y), num_boost_round=rounds)
