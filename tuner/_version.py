"""The package version: one owner, importable by every stage without importing the package."""

__version__ = "0.1.0"
