"""Names derived from sites and species: slugs, file names, registry and endpoint names.

Everything that reaches a path, a job name or an endpoint name goes through here first.
"""

import hashlib
import re
import unicodedata

from biodiv_core.errors import InvalidNameError

MAX_NAME_LENGTH = 200
MAX_SLUG_LENGTH = 63
_ENDPOINT_MAX = 32
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def validate_name(name: str, kind: str = "species") -> str:
    """Return ``name`` stripped, or raise InvalidNameError if it is unsafe to use."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidNameError(f"The {kind} name is empty: give a name such as 'Cygnus buccinator'.")
    cleaned = name.strip()
    if "/" in cleaned or "\\" in cleaned or ".." in cleaned:
        raise InvalidNameError(
            f"The {kind} name {cleaned!r} contains a path separator or '..': "
            "use the plain name, e.g. 'Cygnus buccinator'."
        )
    if _CONTROL.search(cleaned):
        raise InvalidNameError(f"The {kind} name {cleaned!r} contains control characters: remove them.")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"The {kind} name starting {cleaned[:40]!r} is {len(cleaned)} characters long; "
            f"the limit is {MAX_NAME_LENGTH}."
        )
    return cleaned


def slugify(name: str, kind: str = "species") -> str:
    """Partition-key slug: lower case ``[a-z0-9-]``, ASCII-folded, at most 63 characters.

    >>> slugify("Cygnus buccinator")
    'cygnus-buccinator'
    """
    cleaned = validate_name(name, kind)
    ascii_text = unicodedata.normalize("NFKD", cleaned).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    # Names that lose characters in folding (non-Latin scripts) get a hash so two of them never collide.
    lossy = ascii_text != cleaned
    if not slug or lossy and len(slug) < 3:
        slug = (slug + "-" if slug else kind[:1]) + _short_hash(cleaned)
    elif lossy:
        slug = f"{slug}-{_short_hash(cleaned)}"
    if len(slug) > MAX_SLUG_LENGTH:
        slug = slug[: MAX_SLUG_LENGTH - 9].rstrip("-") + "-" + _short_hash(cleaned)
    return slug


MAX_FILE_NAME_BYTES = 255  # ext4, APFS, NTFS (in UTF-16 units), Azure Blob path segments


def species_file_name(species: str) -> str:
    """Gold-data file name of a species (DESIGN section 3): 'Cygnus buccinator' -> cygnus_buccinator_golddata.csv."""
    name = species_stem(species) + "_golddata.csv"
    size = len(name.encode("utf-8"))
    if size > MAX_FILE_NAME_BYTES:
        raise InvalidNameError(
            f"Species name {species[:40]!r}... gives a gold-data file name of {size} bytes in UTF-8 "
            f"({name[:30]}...); file systems allow {MAX_FILE_NAME_BYTES}: use a shorter species name."
        )
    return name


def species_stem(species: str) -> str:
    """NFC-normalized: 'ü' typed as one code point or as 'u' + combining diaeresis names the same file."""
    cleaned = unicodedata.normalize("NFC", validate_name(species, "species"))
    return re.sub(r"[\s\-]+", "_", cleaned.lower())


def features_asset_name(site: str) -> str:
    return f"{slugify(site, 'site')}-training-features"


def species_asset_name(site: str) -> str:
    return f"{slugify(site, 'site')}-training-species"


def covariates_asset_name(site: str) -> str:
    return f"{slugify(site, 'site')}-covariates"


def truth_asset_name(site: str) -> str:
    return f"{slugify(site, 'site')}-truth"


def model_name(site: str, species: str) -> str:
    """Model registry name for a partition."""
    return f"lgbm-{slugify(site, 'site')}-{slugify(species)}"


def endpoint_name(site: str, species: str, namespace: str | None = None) -> str:
    """Batch endpoint name: 3..32 chars, ``^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$``, stable, collision-resistant.

    Readable prefix from site and species, then a hash of the full pair so that two pairs whose
    prefixes collide after shortening still get distinct names. AzureML endpoint names are unique per
    region, so the AzureML backend passes a ``namespace`` (its workspace, or a configured one) that goes
    into the hash: two workspaces deploying the same pair get different names. Without a namespace
    (the local backend) the name is the one this function has always given.
    """
    site_slug, species_slug = slugify(site, "site"), slugify(species)
    key = f"{site_slug}|{species_slug}"
    if namespace is not None and namespace.strip():
        key = f"{namespace.strip().lower()}|{key}"  # Azure resource names are case-insensitive
    digest = _short_hash(key, 8)
    room = _ENDPOINT_MAX - len("b-") - len(digest) - 1  # "b-" + readable + "-" + digest
    readable = f"{site_slug[:8].strip('-')}-{species_slug}"[:room].strip("-")
    return f"b-{readable}-{digest}" if readable else f"b-{digest}"
