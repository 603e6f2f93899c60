"""A second registry backend: Vertex AI Model Registry, for open models (LoRA adapters, sklearn).

One Vertex model per ``model_name``; each registered version is a Vertex model *version* under it
(``upload_model`` with ``parent_model``), carrying:

- labels a person can filter on in the console: ``provider``, ``data_hash`` (first 63 hex), ``tuneloop``
  and one ``m_<metric>`` per numeric metric (the value with ``.`` written ``_``: 0.8123 -> ``0_8123``);
- the full :class:`tuneloop.registry.files.VersionRecord` as the version's ``metadata`` (immutable);
- the model files under ``artifact_uri`` (copied create-only to ``<artifact_root>/<model>/<id>/model``).

The ``champion`` version alias marks the current champion; it moves only in :meth:`set_champion`
(after a blessing, checked against the champion that was evaluated) and :meth:`rollback`. Each
promotion writes ``{"previous": ..., "at": ..., "reason": ...}`` into the promoted version's
``version_description``, so the previous champion stays one step away for rollback.

Vertex has no compare-and-set on aliases: the champion is checked right before the move and read back
after it, and a promotion that finds a different champion afterwards raises :class:`ChampionMoved`.
Where two promotions may race, keep the alias in the GCS file registry, whose compare-and-set is
enforced by object generations. Hosted-provider models (OpenAI, Gemini, Claude) live at their provider;
they are recorded in the file/GCS registry, and this backend refuses them with that advice.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tuneloop import storage
from tuneloop.examples import utc_now
from tuneloop.providers import hosted_names
from tuneloop.registry.files import (
    CHAMPION,
    EXAMPLE_IDS_FILE,
    MODEL_SUBDIR,
    ChampionMoved,
    RegistryError,
    VersionRecord,
    _as_plain,
    _version_number,
)

# A CPU serving image for the model versions (needed by upload_model; deploy with your own if you serve).
DEFAULT_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-5:latest"
_MODEL_ID = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def metric_labels(metrics: Mapping[str, Any]) -> dict[str, str]:
    """Numeric top-level metrics as Vertex labels: ``{"macro_f1": 0.8123}`` -> ``{"m_macro_f1": "0_8123"}``."""
    out = {}
    for k, v in sorted(metrics.items()):
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        key = "m_" + re.sub(r"[^a-z0-9_-]+", "_", str(k).lower())[:60]
        out[key] = f"{v:.4f}".replace(".", "_")
    return out


class VertexRegistry:
    """Versions and the champion alias of one model in Vertex AI Model Registry.

    Args:
        project: Google Cloud project id.
        region: Vertex AI region.
        model_name: Registry model name; also the Vertex model id (lowercase letters, digits, '_', '-').
        artifact_root: ``gs://BUCKET/PREFIX`` where model files and example ids are copied.
        serving_image: The serving container recorded with each version.
    """

    def __init__(
        self,
        project: str,
        region: str,
        model_name: str,
        *,
        artifact_root: str,
        serving_image: str = DEFAULT_SERVING_IMAGE,
    ):
        if not isinstance(model_name, str) or not _MODEL_ID.match(model_name):
            raise ValueError(
                f"model_name={model_name!r} is not a Vertex model id: a lowercase letter, then lowercase "
                "letters, digits, '_' or '-', at most 63"
            )
        if not isinstance(artifact_root, str) or not artifact_root.strip():
            raise ValueError(f"artifact_root={artifact_root!r} must be a gs://BUCKET/PREFIX for model files")
        from tuneloop.cloud import VertexTarget

        VertexTarget(project, region, "gs://placeholder")  # checks project and region
        self.project, self.region, self.model_name = project, region, model_name
        self.artifact_root = artifact_root
        self.serving_image = serving_image
        self.parent = f"projects/{project}/locations/{region}"
        self.model = f"{self.parent}/models/{model_name}"
        self._client = None

    def __repr__(self) -> str:
        return f"VertexRegistry({self.model!r})"

    @property
    def client(self):
        """The Vertex ``ModelServiceClient`` (built on first use, after ``aiplatform.init``)."""
        if self._client is None:
            from tuneloop.cloud import init_vertex

            aiplatform = init_vertex(self.project, self.region)
            from google.cloud.aiplatform import utils

            self._client = aiplatform.initializer.global_config.create_client(
                client_class=utils.ModelClientWithOverride, location_override=self.region
            )
        return self._client

    # -- records ---------------------------------------------------------------------------------------
    def _record(self, model) -> VersionRecord:
        from google.protobuf import json_format

        meta = json_format.MessageToDict(model._pb.metadata) if model._pb.HasField("metadata") else {}
        if not meta.get("version"):
            raise RegistryError(
                f"{model.name}@{model.version_id} was not registered by tuneloop (no record in its metadata)"
            )
        meta["version"] = f"v{model.version_id}"
        return VersionRecord.from_dict(meta)

    def _get_model(self, ref: str):
        from google.api_core import exceptions as gexc

        try:
            return self.client.get_model(name=f"{self.model}@{ref}")
        except gexc.NotFound:
            return None

    # -- versions ----------------------------------------------------------------------------------------
    def register(
        self,
        *,
        provider: str,
        model_ref: str,
        model_dir: str | None,
        metrics: Mapping[str, Any],
        data_hash: str,
        example_ids: Sequence[str],
        config: Mapping[str, Any],
        blessing: Mapping[str, Any] | None,
        lineage: Mapping[str, Any] | None = None,
    ) -> VersionRecord:
        """Upload a new version under the model (the model is created with the first version).

        Same arguments as :meth:`tuneloop.registry.files.FileRegistry.register`. Registering does not move
        the champion.

        Raises:
            ValueError: a hosted-provider model (record it in the file/GCS registry), bad input.
        """
        from google.api_core import exceptions as gexc
        from google.cloud.aiplatform_v1.types import Model, ModelContainerSpec
        from google.protobuf import json_format, struct_pb2

        if provider in hosted_names():
            raise ValueError(
                f"provider={provider!r}: hosted-provider models stay at the provider and are recorded in the "
                "file/GCS registry (FileRegistry with a gs:// root); Vertex Model Registry holds open models"
            )
        if not isinstance(data_hash, str) or not re.fullmatch(r"[0-9a-f]{8,64}", data_hash):
            raise ValueError(f"data_hash={data_hash!r} must be the dataset's sha256 hex digest")
        if model_dir is not None and not Path(model_dir).is_dir():
            raise ValueError(f"model_dir={model_dir!r} is not a directory; pass the trained model's folder")
        ids = [str(i) for i in example_ids]
        plain = {
            "metrics": _as_plain(metrics, "metrics"),
            "config": _as_plain(config, "config"),
            "lineage": _as_plain(lineage, "lineage"),
            "blessing": None if blessing is None else _as_plain(blessing, "blessing"),
        }
        stem = storage.join(self.artifact_root, self.model_name, f"{data_hash[:16]}-{uuid.uuid4().hex[:8]}")
        model_uri = None
        if model_dir is not None:
            model_uri = storage.join(stem, MODEL_SUBDIR)
            storage.upload_dir(model_dir, model_uri, create_only=True)
        ids_uri = storage.join(stem, EXAMPLE_IDS_FILE)
        storage.write(ids_uri, "".join(f"{i}\n" for i in ids).encode(), if_generation=None)
        record = {
            "model_name": self.model_name,
            "version": "pending",
            "provider": provider,
            "model_ref": str(model_ref),
            "model_uri": model_uri,
            "data_hash": data_hash,
            "n_examples": len(ids),
            "example_ids_uri": ids_uri,
            "created_at": utc_now(),
            **plain,
        }
        metadata = struct_pb2.Value()
        json_format.ParseDict(json.loads(json.dumps(record, default=str)), metadata)
        model = Model(
            display_name=self.model_name,
            artifact_uri=model_uri or "",
            container_spec=ModelContainerSpec(image_uri=self.serving_image),
            labels={
                "tuneloop": "v1",
                "provider": re.sub(r"[^a-z0-9_-]", "-", provider.lower())[:63],
                "data_hash": data_hash[:63],
                **metric_labels(plain["metrics"]),
            },
            version_description=json.dumps({"registered_at": record["created_at"]}),
        )
        model._pb.metadata.CopyFrom(metadata)
        for _ in range(3):
            exists = self._get_model("default") is not None
            request = {"parent": self.parent, "model": model}
            if exists:
                request["parent_model"] = self.model
            else:
                request["model_id"] = self.model_name
            try:
                response = self.client.upload_model(request=request).result()
                break
            except gexc.Conflict:
                continue  # another register created the model first: upload as a version of it
        else:
            raise RegistryError(f"{self.model}: could not upload a version (model creation kept conflicting)")
        return self.get(response.model_version_id)

    def get(self, version: str | int) -> VersionRecord:
        """The record of ``version`` (``'v3'`` or ``3``)."""
        n = _version_number(version)
        model = self._get_model(str(n))
        if model is None:
            have = [r.version for r in self.versions()]
            raise RegistryError(f"{self.model_name}: no version v{n}; registered versions are {have}")
        return self._record(model)

    def versions(self) -> list[VersionRecord]:
        """All versions, oldest first."""
        from google.api_core import exceptions as gexc

        try:
            models = list(self.client.list_model_versions(name=self.model))
        except gexc.NotFound:
            return []
        return sorted((self._record(m) for m in models), key=lambda r: r.number)

    # -- champion ---------------------------------------------------------------------------------------
    def champion_version(self) -> str | None:
        """The champion's version name (``"v3"``): one ``models.get`` of ``@champion``, for polling."""
        model = self._get_model(CHAMPION)
        return None if model is None else f"v{model.version_id}"

    def champion(self) -> VersionRecord | None:
        """The version holding the ``champion`` alias, or None before the first promotion."""
        model = self._get_model(CHAMPION)
        return None if model is None else self._record(model)

    def _move(self, target: int, previous: str | None, reason: str, kind: str) -> None:
        from google.protobuf import field_mask_pb2

        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("reason must say why the champion moves (it is written to the version)")
        model = self._get_model(str(target))
        note = {"previous": previous, "at": utc_now(), "reason": reason, "kind": kind}
        if kind == "promote":
            model.name = f"{self.model}@{target}"  # update this version, not the default one
            model.version_description = json.dumps(note, sort_keys=True)
            self.client.update_model(
                model=model, update_mask=field_mask_pb2.FieldMask(paths=["version_description"])
            )
        self.client.merge_version_aliases(name=f"{self.model}@{target}", version_aliases=[CHAMPION])

    def set_champion(self, version: str | int, *, expected: str | None, reason: str) -> VersionRecord:
        """Move ``champion`` to ``version`` if the champion is still ``expected``.

        Raises:
            ChampionMoved: the champion is not ``expected`` (before the move), or another promotion
                moved it during this one (read back after the move).
        """
        target = self.get(version)
        expected_name = None if expected is None else f"v{_version_number(expected)}"
        current = self.champion()
        current_name = current.version if current else None
        if current_name == target.version:
            return target
        if current_name != expected_name:
            raise ChampionMoved(
                f"{self.model_name}: the champion moved since the candidate was evaluated: it is "
                f"{current_name or 'none'}, but {target.version} was evaluated against "
                f"{expected_name or 'no champion'}; re-evaluate and promote again",
                current=current_name,
                expected=expected_name,
            )
        self._move(target.number, current_name, reason, "promote")
        after = self.champion()
        if after is None or after.version != target.version:
            raise ChampionMoved(
                f"{self.model_name}: another promotion moved the champion to "
                f"{after.version if after else 'none'} while {target.version} was being promoted",
                current=after.version if after else None,
                expected=expected_name,
            )
        return target

    def rollback(self, *, reason: str) -> VersionRecord:
        """Give ``champion`` back to the version that held it before the current one.

        Raises:
            RegistryError: no champion, or the champion was the first one promoted.
        """
        current = self._get_model(CHAMPION)
        if current is None:
            raise RegistryError(f"{self.model_name}: no champion to roll back from")
        try:
            previous = json.loads(current.version_description or "{}").get("previous")
        except ValueError:
            previous = None
        if not previous:
            raise RegistryError(
                f"{self.model_name}: v{current.version_id} was the first champion; nothing to roll back to"
            )
        self._move(_version_number(previous), f"v{current.version_id}", reason, "rollback")
        return self.get(previous)

    def show(self) -> dict[str, Any]:
        """A summary for the CLI: champion and versions with key metrics."""
        champ = self.champion()
        return {
            "model_name": self.model_name,
            "registry": self.model,
            "champion": champ.version if champ else None,
            "versions": [
                {
                    "version": r.version,
                    "provider": r.provider,
                    "data_hash": r.data_hash,
                    "metrics": {k: v for k, v in r.metrics.items() if isinstance(v, int | float)},
                    "champion": champ is not None and r.version == champ.version,
                }
                for r in self.versions()
            ],
        }
