import pytest

from biodiv_core.errors import ConfigError
from biodiv_core.threads import available_cores, cpu_budget


def test_budget_splits_cores_between_concurrent_runs(monkeypatch):
    monkeypatch.delenv("BIODIV_NUM_THREADS", raising=False)
    cores = available_cores()
    assert cpu_budget() == cores
    assert cpu_budget(concurrent_runs=2) == max(1, cores // 2)
    assert cpu_budget(concurrent_runs=cores * 10) == 1


def test_environment_override(monkeypatch):
    monkeypatch.setenv("BIODIV_NUM_THREADS", "3")
    assert cpu_budget(concurrent_runs=8) == 3
    monkeypatch.setenv("BIODIV_NUM_THREADS", "zero")
    with pytest.raises(ConfigError, match="BIODIV_NUM_THREADS"):
        cpu_budget()


def test_invalid_concurrency(monkeypatch):
    monkeypatch.delenv("BIODIV_NUM_THREADS", raising=False)
    with pytest.raises(ConfigError, match="concurrent_runs"):
        cpu_budget(concurrent_runs=0)
