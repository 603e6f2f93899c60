"""Model registries: versions with lineage, and a champion alias moved by compare-and-set.

:func:`open_registry` picks the backend from the registry URI, so every stage and the CLI take one
string: a directory or ``gs://`` prefix is the file registry (:class:`FileRegistry`);
``vertex://PROJECT/REGION?artifact_root=gs://BUCKET/PREFIX`` is Vertex AI Model Registry
(:class:`~tuneloop.registry.vertex.VertexRegistry`, imported only when asked for).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

from tuneloop import storage
from tuneloop.registry.files import ChampionMoved, FileRegistry, RegistryError, VersionRecord

VERTEX_SCHEME = "vertex://"


def open_registry(uri: str, model_name: str):
    """The registry at ``uri`` for ``model_name`` (file/GCS registry, or Vertex Model Registry).

    Raises:
        ValueError: a ``vertex://`` URI without project, region or ``artifact_root``.
    """
    if not isinstance(uri, str) or not uri.startswith(VERTEX_SCHEME):
        return FileRegistry(uri, model_name)
    parts = urlsplit(uri)
    project, region = parts.netloc, parts.path.strip("/")
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - {"artifact_root", "serving_image"})
    if not project or not region or "/" in region or unknown or not query.get("artifact_root"):
        raise ValueError(
            f"registry_uri={uri!r}: write vertex://PROJECT/REGION?artifact_root=gs://BUCKET/PREFIX "
            "(optionally &serving_image=IMAGE), or pass a directory / gs:// prefix for the file registry"
        )
    from tuneloop.registry.vertex import VertexRegistry

    extra = {"serving_image": query["serving_image"][0]} if query.get("serving_image") else {}
    return VertexRegistry(project, region, model_name, artifact_root=query["artifact_root"][0], **extra)


def model_ref_of(record: VersionRecord) -> str:
    """What a provider's ``predict`` takes for a registered version.

    A version with stored model files answers from that copy (mirrored locally from ``gs://``): the
    training task's own directory is gone once its pipeline run ends. A remote model (an OpenAI,
    Gemini or Bedrock model id) is its ``model_ref``.
    """
    if record.model_uri:
        return str(storage.download_dir(record.model_uri))
    return record.model_ref


def task_of_record(record: VersionRecord) -> str:
    """The task kind a registered version was tuned for (``config.task``, else its blessing's, else
    ``classification``: versions registered before tasks were recorded)."""
    for source in (record.config, record.blessing):
        if isinstance(source, Mapping) and source.get("task"):
            return str(source["task"])
    return "classification"


__all__ = ["ChampionMoved", "FileRegistry", "RegistryError", "VersionRecord", "model_ref_of", "open_registry",
           "task_of_record"]
