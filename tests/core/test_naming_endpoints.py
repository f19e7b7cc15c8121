"""Batch endpoint names with a namespace: unique per workspace, valid, stable; without one, unchanged."""

import re

import pytest

from biodiv_core.naming import endpoint_name

ENDPOINT = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
PAIRS = [
    (site, f"{genus} {epithet}")
    for site in ["Yellowstone", "Grand Teton National Park", "Île d'Orléans", "x"]
    for genus in ["Cygnus", "Anas", "Aythya", "熊猫"]
    for epithet in ["buccinator", "columbianus", "acuta", "y" * 150]
]
NAMESPACES = [
    "00000000-0000-0000-0000-000000000000/rg-biodiv/ws-dev",
    "00000000-0000-0000-0000-000000000000/rg-biodiv/ws-prod",
    "11111111-1111-1111-1111-111111111111/rg-biodiv/ws-dev",
    "team-a",
]


def test_names_without_a_namespace_are_the_ones_local_endpoints_already_have():
    # Values computed by endpoint_name before namespaces existed: local endpoint records keep their names.
    assert endpoint_name("Yellowstone", "Cygnus buccinator") == "b-yellowst-cygnus-bucci-610d8a50"
    assert endpoint_name("everglades", "Haliaeetus leucocephalus") == "b-everglad-haliaeetus-l-4f3dbe53"
    for namespace in (None, "", "   "):
        assert endpoint_name("Yellowstone", "Cygnus buccinator", namespace) == "b-yellowst-cygnus-bucci-610d8a50"


def test_a_namespace_changes_only_the_hash_and_is_case_insensitive():
    plain = endpoint_name("Yellowstone", "Cygnus buccinator")
    dev = endpoint_name("Yellowstone", "Cygnus buccinator", "sub/rg/ws-dev")
    prod = endpoint_name("Yellowstone", "Cygnus buccinator", "sub/rg/ws-prod")
    assert len({plain, dev, prod}) == 3
    assert plain.rsplit("-", 1)[0] == dev.rsplit("-", 1)[0] == prod.rsplit("-", 1)[0]  # same readable prefix
    assert endpoint_name("Yellowstone", "Cygnus buccinator", " SUB/RG/WS-DEV ") == dev
    assert endpoint_name("Yellowstone", "Cygnus buccinator", "sub/rg/ws-dev") == dev  # stable


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_namespaced_names_are_valid(namespace):
    for site, species in PAIRS:
        name = endpoint_name(site, species, namespace)
        assert 3 <= len(name) <= 32 and ENDPOINT.match(name), name


def test_namespaced_names_are_unique_across_pairs_and_workspaces():
    names = [endpoint_name(site, species, namespace) for namespace in [None, *NAMESPACES] for site, species in PAIRS]
    assert len(set(names)) == len(names) == (len(NAMESPACES) + 1) * len(PAIRS)
