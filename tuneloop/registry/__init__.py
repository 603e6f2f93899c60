"""Model registries: versions with lineage, and a champion alias moved by compare-and-set."""

from tuneloop.registry.files import ChampionMoved, FileRegistry, RegistryError, VersionRecord

__all__ = ["ChampionMoved", "FileRegistry", "RegistryError", "VersionRecord"]
