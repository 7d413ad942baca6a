"""A shim: the build and the metadata are declared in pyproject.toml (PEP 517
and 621). Kept for tools and habits that look for setup.py."""

from setuptools import setup

setup()
