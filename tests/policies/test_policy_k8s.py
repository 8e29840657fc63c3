"""The pack's copy of the platform's annotation and label keys equals components/labels.py.

The pack must stay standalone (it runs from policies/ with nothing of components/ imported), so
it keeps its own constants; this table pins each to the components' definition.
"""

import pytest

from agent_policies import k8s
from components import labels as L

SHARED = [
    (k8s.ANN_STATEFUL, L.STATEFUL),
    (k8s.ANN_MAX_RUN_SECONDS, L.MAX_RUN_SECONDS),
    (k8s.ANN_STATE_SOURCES, L.STATE_SOURCES),
    (k8s.ANN_BACKUP_SOURCE, L.BACKUP_SOURCE),
    (k8s.ANN_RETENTION, L.RETENTION),
    (k8s.ANN_MONITORING, L.MONITORING),
    (k8s.LABEL_COMPONENT, L.COMPONENT),
]


@pytest.mark.parametrize("pack,components", SHARED, ids=[p for p, _ in SHARED])
def test_pack_reads_the_keys_components_write(pack, components):
    assert pack == components


def test_every_platform_key_of_the_pack_is_in_the_table():
    keys = {v for k, v in vars(k8s).items() if k.startswith(("ANN_", "LABEL_")) and isinstance(v, str)}
    assert keys == {p for p, _ in SHARED}, "a new key in the pack needs its components twin in SHARED"
