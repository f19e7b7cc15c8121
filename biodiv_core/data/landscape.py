"""The synthetic world behind the sample data: site landscapes, spatially structured covariates, species niches.

Per site: points clustered in space (observers visit places, not a grid), covariates derived from a few
smooth latent fields so they are correlated the way real layers are (temperature falls with elevation and
latitude, NDVI follows rain and warmth, land cover follows NDVI, moisture and people). Per species: a
niche, a logistic response to a few covariates (linear terms, one quadratic optimum, a land-cover effect)
giving the true presence probability. Vectorised numpy, deterministic for a seed; the niche is calibrated
on a reference sample that does not depend on the number of rows. `generate` writes it to a data store.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

DEFAULT_SITES = ("yellowstone", "everglades")
DEFAULT_SPECIES = ("Cygnus buccinator", "Haliaeetus leucocephalus", "Lynx canadensis")
NUMERIC_COVARIATES = (
    "elevation",
    "temperature_mean",
    "temperature_range",
    "precipitation_annual",
    "precipitation_seasonality",
    "ndvi",
    "slope",
    "northness",
    "soil_moisture",
    "distance_to_water",
    "human_footprint",
    "solar_radiation",
)
CATEGORICAL_COVARIATE = "land_cover"
LAND_COVER = ("open_water", "wetland", "forest", "shrubland", "grassland", "barren", "developed")
MIN_COVARIATES = 4
REFERENCE_ROWS = 20_000
_N_LATENT = 6
_N_WAVES = 12


@dataclass(frozen=True)
class SiteProfile:
    lat: tuple[float, float]
    lon: tuple[float, float]
    elevation_base: float  # m
    elevation_span: float  # m
    temperature_sea_level: float  # degC at 0 m and the site's mid latitude
    precipitation: float  # mm per year at the base elevation
    footprint: float  # mean human footprint, 0..50


# Real places get plausible numbers; any other site name gets a profile derived from its name.
_KNOWN_SITES = {
    "yellowstone": SiteProfile((44.13, 45.11), (-111.16, -109.82), 1600.0, 1800.0, 16.0, 450.0, 6.0),
    "everglades": SiteProfile((25.13, 25.95), (-81.35, -80.40), 0.0, 6.0, 24.5, 1400.0, 12.0),
}


def name_key(text: str) -> int:
    # Python's hash() is salted per process; crc32 is stable across runs and machines.
    return zlib.crc32(text.encode("utf-8"))


def site_profile(site: str) -> SiteProfile:
    key = site.strip().lower()
    if key in _KNOWN_SITES:
        return _KNOWN_SITES[key]
    rng = np.random.default_rng([name_key(key), 7])
    lat0, lon0 = rng.uniform(-45, 60), rng.uniform(-170, 170)
    size = rng.uniform(0.5, 1.5)
    return SiteProfile(
        lat=(round(lat0, 2), round(lat0 + size, 2)),
        lon=(round(lon0, 2), round(lon0 + size * 1.3, 2)),
        elevation_base=float(rng.choice([0.0, 200.0, 800.0, 1500.0])),
        elevation_span=float(rng.uniform(20, 2000)),
        temperature_sea_level=float(28 - 0.45 * abs(lat0)),
        precipitation=float(rng.uniform(250, 2500)),
        footprint=float(rng.uniform(2, 25)),
    )


# --------------------------------------------------------------------------- the landscape


@dataclass(frozen=True)
class _Landscape:
    """Random but fixed (per seed and site) smooth fields and covariate mixing weights."""

    profile: SiteProfile
    waves: np.ndarray  # (_N_LATENT, _N_WAVES, 2) spatial frequencies, cycles per site width
    phases: np.ndarray  # (_N_LATENT, _N_WAVES)
    amplitudes: np.ndarray  # (_N_LATENT, _N_WAVES), each row scaled to unit field variance
    centres: np.ndarray  # (n_clusters, 2) cluster centres in unit coordinates
    spreads: np.ndarray  # (n_clusters,)
    weights: np.ndarray  # (n_clusters,) sampling weights
    extra_mix: np.ndarray  # (n_extra, _N_LATENT + 3) weights of extra covariates


def make_landscape(site: str, seed: int, n_extra: int) -> _Landscape:
    rng = np.random.default_rng([seed, name_key(site), 1])
    waves = rng.normal(0.0, 1.4, size=(_N_LATENT, _N_WAVES, 2))
    phases = rng.uniform(0, 2 * np.pi, size=(_N_LATENT, _N_WAVES))
    amplitudes = rng.uniform(0.5, 1.5, size=(_N_LATENT, _N_WAVES))
    # Var(sum a cos(.)) = sum a^2 / 2 for independent phases: scale each field to unit variance.
    amplitudes /= np.sqrt((amplitudes**2).sum(axis=1, keepdims=True) / 2)
    n_clusters = 40
    centres = rng.uniform(0.05, 0.95, size=(n_clusters, 2))
    spreads = rng.uniform(0.005, 0.04, size=n_clusters)
    weights = rng.dirichlet(np.full(n_clusters, 0.8))
    extra_rng = np.random.default_rng([seed, name_key(site), 2])
    extra_mix = extra_rng.normal(0, 1, size=(n_extra, _N_LATENT + 3))
    return _Landscape(site_profile(site), waves, phases, amplitudes, centres, spreads, weights, extra_mix)


def sample_points(land: _Landscape, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unit-square coordinates: 85% clustered around visited places, 15% scattered."""
    cluster = rng.choice(len(land.weights), size=n, p=land.weights)
    xy = land.centres[cluster] + rng.normal(size=(n, 2)) * land.spreads[cluster, None]
    scattered = rng.random(n) < 0.15
    xy[scattered] = rng.random((int(scattered.sum()), 2))
    np.clip(xy, 0.0, 1.0, out=xy)
    return xy[:, 0], xy[:, 1]


def _latent(land: _Landscape, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(n, _N_LATENT) smooth unit-variance fields at the points, computed in chunks to bound memory."""
    out = np.empty((len(u), _N_LATENT))
    for start in range(0, len(u), 200_000):
        uu, vv = u[start : start + 200_000, None], v[start : start + 200_000, None]
        for k in range(_N_LATENT):
            angle = 2 * np.pi * (uu * land.waves[k, :, 0] + vv * land.waves[k, :, 1]) + land.phases[k]
            out[start : start + 200_000, k] = np.cos(angle) @ land.amplitudes[k]
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def covariates_at(land: _Landscape, u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """All numeric covariates, the extra ones and land cover, rounded as a GIS export would be."""
    p = land.profile
    n = len(u)
    L = _latent(land, u, v)

    def noise(scale: float) -> np.ndarray:
        return rng.normal(0.0, scale, n)

    lat = p.lat[0] + v * (p.lat[1] - p.lat[0])
    relief = np.clip(p.elevation_span / 1000.0, 0.02, 1.5)  # flat sites have gentle slopes
    elevation = (
        p.elevation_base + p.elevation_span * _sigmoid(1.6 * L[:, 0] + 0.5 * L[:, 1]) + noise(0.01 * p.elevation_span)
    )
    rel_elev = (elevation - p.elevation_base) / max(p.elevation_span, 1.0)
    temperature_mean = (
        p.temperature_sea_level - 0.0065 * elevation - 0.7 * (lat - np.mean(p.lat)) + 0.6 * L[:, 2] + noise(0.3)
    )
    temperature_range = 12.0 + 1.5 * L[:, 3] + 2.0 * rel_elev - 0.5 * L[:, 1] + noise(0.4)
    precipitation_annual = p.precipitation * np.exp(0.22 * L[:, 1] + 0.5 * rel_elev + noise(0.06))
    precip_z = 0.22 * L[:, 1] + 0.5 * rel_elev
    precipitation_seasonality = 45.0 - 10.0 * L[:, 1] + 5.0 * L[:, 4] + noise(2.0)
    ndvi = 0.9 * _sigmoid(2.2 * precip_z + 0.25 * L[:, 5] - 0.06 * (15.0 - temperature_mean) + 0.4) - 0.12 + noise(0.04)
    slope = relief * 28.0 * np.abs(np.tanh(0.9 * L[:, 5] + 0.6 * L[:, 0])) + np.abs(noise(1.0))
    northness = np.clip(np.sin(2.5 * L[:, 5] + 1.5 * L[:, 3]) + noise(0.2), -1.0, 1.0)
    soil_moisture = np.clip(18.0 + 14.0 * precip_z + 3.0 * L[:, 3] - 0.25 * slope + noise(2.0), 1.0, 60.0)
    distance_to_water = 900.0 * np.exp(0.9 * L[:, 2] - 1.2 * precip_z + noise(0.35))
    human_footprint = np.clip(
        50.0 * _sigmoid(np.log(p.footprint / (50 - p.footprint)) + 1.1 * L[:, 4] - 0.03 * slope - rel_elev)
        + noise(1.5),
        0.0,
        50.0,
    )
    solar_radiation = 6.2 - 0.045 * lat - 0.6 * northness * slope / 30.0 + 0.15 * L[:, 3] + noise(0.1)
    values = {
        "elevation": np.round(elevation, 1),
        "temperature_mean": np.round(temperature_mean, 2),
        "temperature_range": np.round(temperature_range, 2),
        "precipitation_annual": np.round(precipitation_annual, 1),
        "precipitation_seasonality": np.round(precipitation_seasonality, 2),
        "ndvi": np.round(np.clip(ndvi, -0.2, 0.95), 4),
        "slope": np.round(slope, 2),
        "northness": np.round(northness, 4),
        "soil_moisture": np.round(soil_moisture, 2),
        "distance_to_water": np.round(distance_to_water, 1),
        "human_footprint": np.round(human_footprint, 2),
        "solar_radiation": np.round(solar_radiation, 3),
    }
    # Extra covariates (beyond the named twelve) mix the latent fields and a few named layers.
    anchors = np.column_stack([L, (ndvi - 0.4) * 4, (soil_moisture - 18) / 8, rel_elev * 2 - 1])
    for i, mix in enumerate(land.extra_mix):
        values[f"env_{len(NUMERIC_COVARIATES) + i + 1:02d}"] = np.round(anchors @ mix / 2 + noise(0.5), 4)

    # Land cover follows water, wetness, greenness and people, with 5% label noise (classification error).
    cover = np.full(n, LAND_COVER.index("grassland"), dtype=np.int8)
    cover[ndvi > 0.28] = LAND_COVER.index("shrubland")
    cover[ndvi > 0.5] = LAND_COVER.index("forest")
    cover[ndvi < 0.12] = LAND_COVER.index("barren")
    cover[(soil_moisture > 28) & (slope < 4 * relief + 1)] = LAND_COVER.index("wetland")
    cover[human_footprint > 32] = LAND_COVER.index("developed")
    cover[distance_to_water < 120] = LAND_COVER.index("open_water")
    flip = rng.random(n) < 0.05
    cover[flip] = rng.integers(0, len(LAND_COVER), int(flip.sum()))
    values[CATEGORICAL_COVARIATE] = cover
    return values


def select_covariates(values: dict[str, np.ndarray], n_covariates: int) -> dict[str, np.ndarray]:
    """The first ``n_covariates - 1`` numeric columns plus land cover."""
    numeric = [k for k in values if k != CATEGORICAL_COVARIATE][: n_covariates - 1]
    return {k: values[k] for k in numeric} | {CATEGORICAL_COVARIATE: values[CATEGORICAL_COVARIATE]}


# --------------------------------------------------------------------------- niches


@dataclass(frozen=True)
class Niche:
    """Logit = intercept + scale * (sum linear + quadratic optimum + land-cover effect), on standardised covariates."""

    linear: dict[str, float]
    quadratic: tuple[str, float, float]  # covariate, optimum (z), curvature
    land_cover: np.ndarray  # effect per LAND_COVER class
    means: dict[str, float]
    stds: dict[str, float]
    scale: float = 1.0
    intercept: float = 0.0

    def raw(self, values: dict[str, np.ndarray]) -> np.ndarray:
        def z(name: str) -> np.ndarray:
            return np.clip((values[name] - self.means[name]) / self.stds[name], -3.0, 3.0)

        eta = self.land_cover[values[CATEGORICAL_COVARIATE]].astype(float)
        for name, coef in self.linear.items():
            eta += coef * z(name)
        name, optimum, curvature = self.quadratic
        eta -= curvature * (z(name) - optimum) ** 2
        return eta

    def probability(self, values: dict[str, np.ndarray]) -> np.ndarray:
        return _sigmoid(self.intercept + self.scale * self.raw(values))


def _intercept_for(raw: np.ndarray, scale: float, prevalence: float) -> float:
    low, high = -30.0, 30.0
    for _ in range(50):  # bisection: the mean probability increases with the intercept
        mid = (low + high) / 2
        if _sigmoid(mid + scale * raw).mean() < prevalence:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _expected_auc(sorted_probability: np.ndarray) -> float:
    """AUC of the true probability against labels drawn from it, in expectation (scores sorted ascending)."""
    p = sorted_probability
    below = np.cumsum(1.0 - p) - (1.0 - p)  # expected negatives ranked below each point
    return float((p * below).sum() / (p.sum() * (1.0 - p).sum()))


def make_niche(site: str, species: str, seed: int, reference: dict[str, np.ndarray], numeric: list[str]) -> Niche:
    rng = np.random.default_rng([seed, name_key(site), name_key(species.strip().lower()), 3])
    # A species responds to a few of the named layers, never to the extra ones (like a real niche).
    candidates = [c for c in numeric if c in NUMERIC_COVARIATES]
    chosen = rng.choice(len(candidates), size=min(3, len(candidates)), replace=False)
    names = [candidates[i] for i in chosen]
    linear = {n: float(rng.choice([-1, 1]) * rng.uniform(0.6, 1.2)) for n in names[:-1]}
    quadratic = (names[-1], float(rng.uniform(-0.8, 0.8)), float(rng.uniform(0.4, 0.8)))
    land_cover = rng.normal(0.0, 0.6, len(LAND_COVER))
    # Robust standardisation (median, IQR): skewed layers such as distance to water would otherwise
    # let a few extreme points dominate the response.
    means = {n: float(np.median(reference[n])) for n in names}
    stds = {n: float(np.subtract(*np.percentile(reference[n], [75, 25])) / 1.349) or 1.0 for n in names}
    niche = Niche(linear, quadratic, land_cover, means, stds)

    # Calibrate on the reference sample: a response steep enough for an expected Bayes-optimal AUC
    # drawn from 0.82..0.88 (learnable, not trivial), and a prevalence between 25% and 50%.
    raw = np.sort(niche.raw(reference))
    target_auc, prevalence = rng.uniform(0.82, 0.88), rng.uniform(0.25, 0.5)
    low, high = 0.01, 20.0
    for _ in range(30):  # bisection on the scale: the AUC grows with the steepness of the response
        scale = (low + high) / 2 / raw.std()
        auc = _expected_auc(_sigmoid(_intercept_for(raw, scale, prevalence) + scale * raw))
        low, high = (scale * raw.std(), high) if auc < target_auc else (low, scale * raw.std())
    scale = (low + high) / 2 / raw.std()
    return Niche(linear, quadratic, land_cover, means, stds, float(scale), _intercept_for(raw, scale, prevalence))
