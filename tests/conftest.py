"""Shared test setup. Each area keeps its own fixtures in its folder's conftest.py."""
