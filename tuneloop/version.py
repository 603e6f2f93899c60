"""The package version: the one place image tags and the compiled pipelines read it from."""

__version__ = "0.1.0"
