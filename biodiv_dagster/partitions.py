"""Site x species partitions (DESIGN section 4).

Both dimensions are dynamic: the partition sync adds keys from config and the data store.
Keys are slugs (`biodiv_core.naming.slugify`); a multi-partition key reads "<site>|<species>".
"""

import dagster as dg

SITE_DIMENSION = "site"
SPECIES_DIMENSION = "species"

site_partitions = dg.DynamicPartitionsDefinition(name="site")
species_partitions = dg.DynamicPartitionsDefinition(name="species")
site_species_partitions = dg.MultiPartitionsDefinition(
    {SITE_DIMENSION: site_partitions, SPECIES_DIMENSION: species_partitions}
)


def partition_key(site_slug: str, species_slug: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({SITE_DIMENSION: site_slug, SPECIES_DIMENSION: species_slug})


def split_partition_key(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """(site_slug, species_slug) of a multi-partition key or its string form."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
    else:
        dims = dict(zip(sorted([SITE_DIMENSION, SPECIES_DIMENSION]), str(key).split("|"), strict=True))
    return dims[SITE_DIMENSION], dims[SPECIES_DIMENSION]
