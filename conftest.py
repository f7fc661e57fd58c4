"""Test order for `pytest -n 2 --dist loadfile` (pyproject.toml): a worker takes whole files in collection
order, so the longest file, the classroom tests (every chapter graded three times, ~8 min on one core), goes
first; otherwise it could start last and leave the other worker idle. The rest keep pytest's order."""
import pytest

LONGEST_FIRST = ("tests/test_classroom.py",)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in LONGEST_FIRST)   # stable: False sorts first
