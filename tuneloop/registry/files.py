"""A model registry in blob storage (a local directory now, ``gs://`` through tuneloop.storage later).

Layout under ``<root>/<model_name>/``::

    versions/v<N>/claim.json          create-only: reserves the number N
    versions/v<N>/model/...           the model files, copied create-only
    versions/v<N>/example_ids.txt     the training example ids, one per line
    versions/v<N>/version.json        create-only, written last: the version exists once this does
    aliases.json                      {"champion": "v2", "history": [{version, previous, at, reason, kind}]}

Version numbers are allocated with create-only writes, retried on conflict, so racing registers get
distinct numbers. The champion alias moves only by compare-and-set against the champion that was
evaluated (:meth:`FileRegistry.set_champion`): a promotion that lost a race raises
:class:`ChampionMoved` instead of overwriting a newer champion.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuneloop import storage
from tuneloop.examples import utc_now

VERSION_FILE = "version.json"
CLAIM_FILE = "claim.json"
EXAMPLE_IDS_FILE = "example_ids.txt"
MODEL_SUBDIR = "model"
ALIASES_FILE = "aliases.json"
CHAMPION = "champion"
_VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")
_MAX_ALLOCATION_TRIES = 1000


class RegistryError(LookupError):
    """A version or alias the caller asked for does not exist; the message says what does."""


class ChampionMoved(storage.ConflictError):
    """The champion is no longer the one the candidate was evaluated against."""

    def __init__(self, message: str, *, current: str | None, expected: str | None):
        super().__init__(message)
        self.current = current
        self.expected = expected


@dataclass(frozen=True)
class VersionRecord:
    """One registered model version (the content of ``version.json``)."""

    model_name: str
    version: str
    provider: str
    model_ref: str
    model_uri: str | None
    metrics: Mapping[str, Any]
    data_hash: str
    n_examples: int
    example_ids_uri: str
    config: Mapping[str, Any]
    blessing: Mapping[str, Any] | None
    lineage: Mapping[str, Any] = field(default_factory=dict)
    created_at: str = ""

    @property
    def number(self) -> int:
        return _version_number(self.version)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("metrics", "config", "lineage"):
            d[k] = dict(getattr(self, k))
        d["blessing"] = None if self.blessing is None else dict(self.blessing)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VersionRecord:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


def _version_number(version: str | int) -> int:
    if isinstance(version, int) and not isinstance(version, bool) and version > 0:
        return version
    if isinstance(version, str):
        s = version.strip()
        m = _VERSION_RE.match(s) or _VERSION_RE.match("v" + s)
        if m:
            return int(m.group(1))
    raise RegistryError(f"version={version!r} is not a version name; write e.g. 'v3' (or 3)")


def _as_plain(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}={value!r} must be a mapping (a JSON object)")
    return dict(value)


class FileRegistry:
    """Versions, lineage and the champion alias of one model, stored under ``root/model_name``.

    Args:
        root: a local directory (or, once tuneloop.storage supports it, a ``gs://`` prefix).
        model_name: the model's name; one folder per model.
    """

    def __init__(self, root: str, model_name: str):
        if not isinstance(model_name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-]*", model_name):
            raise ValueError(
                f"model_name={model_name!r} must be letters, digits, '.', '_' or '-' (no slashes), "
                "e.g. 'support-intent'"
            )
        if not isinstance(root, str) or not root.strip():
            raise ValueError(f"root={root!r} must be a directory path or a storage URI")
        self.root = root
        self.model_name = model_name
        self.base = storage.join(str(root), model_name)
        self.versions_uri = storage.join(self.base, "versions")
        self.aliases_uri = storage.join(self.base, ALIASES_FILE)

    def __repr__(self) -> str:
        return f"FileRegistry(root={self.root!r}, model_name={self.model_name!r})"

    def _vdir(self, number: int) -> str:
        return storage.join(self.versions_uri, f"v{number}")

    def _claimed_numbers(self) -> list[int]:
        out = []
        for child in storage.list_prefix(self.versions_uri):
            m = _VERSION_RE.match(child.rstrip("/").rsplit("/", 1)[-1])
            if m:
                out.append(int(m.group(1)))
        return sorted(out)

    # -- versions ----------------------------------------------------------------------------------
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
        """Register a new version (numbered v1, v2, ... without gaps unless a register crashed).

        Registering does not move the champion: that is :meth:`set_champion`, after a blessing.

        Args:
            provider: the provider that trained it.
            model_ref: what the provider's ``predict`` takes (a local path or a remote model id).
            model_dir: a local directory whose files are copied into the version (None for remote models).
            metrics: eval metrics of the version.
            data_hash: the training dataset hash.
            example_ids: ids of the training examples (stored in ``example_ids.txt``).
            config: the tuning config (hyperparameters, base model).
            blessing: the evaluator's blessing (``Blessing.to_dict()``), or None.
            lineage: anything else worth tracing (pipeline run, job id, watermark).

        Returns:
            The stored :class:`VersionRecord`.
        """
        if not isinstance(provider, str) or not provider:
            raise ValueError(f"provider={provider!r} must be a provider name such as 'sklearn'")
        if not isinstance(data_hash, str):
            raise ValueError(f"data_hash={data_hash!r} must be the dataset hash string")
        ids = [str(i) for i in example_ids]
        bad = [i for i in ids if not i or "\n" in i or "\r" in i]
        if bad:
            raise ValueError(f"example_ids: {bad[0]!r} is not an id (empty or contains a newline)")
        if model_dir is not None and not Path(model_dir).is_dir():
            raise ValueError(
                f"model_dir={model_dir!r} is not a directory; pass the trained model's folder or None"
            )
        # Checked before a number is claimed, so bad input burns no version.
        plain = {
            "metrics": _as_plain(metrics, "metrics"),
            "config": _as_plain(config, "config"),
            "lineage": _as_plain(lineage, "lineage"),
            "blessing": None if blessing is None else _as_plain(blessing, "blessing"),
        }
        number = self._claim()
        vdir = self._vdir(number)
        model_uri = None
        if model_dir is not None:
            model_uri = storage.join(vdir, MODEL_SUBDIR)
            storage.upload_dir(model_dir, model_uri, create_only=True)
        ids_uri = storage.join(vdir, EXAMPLE_IDS_FILE)
        storage.write(ids_uri, "".join(f"{i}\n" for i in ids).encode("utf-8"), if_generation=None)
        record = VersionRecord(
            model_name=self.model_name,
            version=f"v{number}",
            provider=provider,
            model_ref=str(model_ref),
            model_uri=model_uri,
            data_hash=data_hash,
            n_examples=len(ids),
            example_ids_uri=ids_uri,
            created_at=utc_now(),
            **plain,
        )
        storage.write_json(storage.join(vdir, VERSION_FILE), record.to_dict(), if_generation=None)
        return record

    def _claim(self) -> int:
        for _ in range(_MAX_ALLOCATION_TRIES):
            claimed = self._claimed_numbers()
            number = (claimed[-1] if claimed else 0) + 1
            try:
                storage.write_json(
                    storage.join(self._vdir(number), CLAIM_FILE),
                    {"claimed_at": utc_now()},
                    if_generation=None,
                )
                return number
            except storage.ConflictError:
                continue  # another register took this number: list again and take the next one
        raise storage.ConflictError(
            f"{self.versions_uri}: could not allocate a version number after {_MAX_ALLOCATION_TRIES} tries"
        )

    def get(self, version: str | int) -> VersionRecord:
        """The record of ``version`` (``'v3'`` or ``3``); RegistryError naming the existing ones if absent."""
        number = _version_number(version)
        value, _ = storage.read_json(storage.join(self._vdir(number), VERSION_FILE))
        if value is None:
            have = [r.version for r in self.versions()]
            raise RegistryError(f"{self.model_name}: no version v{number}; registered versions are {have}")
        return VersionRecord.from_dict(value)

    def versions(self) -> list[VersionRecord]:
        """All complete versions, oldest first (a claimed number whose register crashed is skipped)."""
        out = []
        for n in self._claimed_numbers():
            value, _ = storage.read_json(storage.join(self._vdir(n), VERSION_FILE))
            if value is not None:
                out.append(VersionRecord.from_dict(value))
        return out

    def example_ids(self, version: str | int) -> list[str]:
        """The training example ids stored with ``version``."""
        rec = self.get(version)
        return storage.read_bytes(rec.example_ids_uri).decode("utf-8").splitlines()

    # -- champion alias ------------------------------------------------------------------------------
    def _read_aliases(self) -> tuple[dict[str, Any], str | None]:
        value, generation = storage.read_json(self.aliases_uri)
        if value is None:
            value = {CHAMPION: None, "history": []}
        return value, generation

    def _write_aliases(self, value: Mapping[str, Any], generation: str | None) -> None:
        # generation None = there was no alias file: create-only, so a racing first promotion loses.
        storage.write_json(self.aliases_uri, value, if_generation=generation)

    def champion_version(self) -> str | None:
        """The champion's version name (``"v3"``) from the alias file alone: one small read, for polling."""
        value, _ = self._read_aliases()
        return value.get(CHAMPION)

    def champion(self) -> VersionRecord | None:
        """The current champion's record, or None before the first promotion."""
        value, _ = self._read_aliases()
        current = value.get(CHAMPION)
        return None if current is None else self.get(current)

    def set_champion(self, version: str | int, *, expected: str | None, reason: str) -> VersionRecord:
        """Make ``version`` the champion, if the champion is still ``expected`` (compare-and-set).

        ``expected`` is the champion the candidate was evaluated against (None: there was none). When
        ``version`` already is the champion (a retried promotion), nothing is written.

        Raises:
            ChampionMoved: the champion changed since it was evaluated (different alias content, or the
                alias file changed between this read and this write).
            RegistryError: ``version`` is not registered.
        """
        target = self.get(version).version
        expected_name = None if expected is None else f"v{_version_number(expected)}"
        value, generation = self._read_aliases()
        current = value.get(CHAMPION)
        if current == target:
            return self.get(target)
        if current != expected_name:
            raise self._moved(target, current, expected_name)
        history = [*value.get("history", []), self._entry(target, current, reason, "promote")]
        try:
            self._write_aliases({CHAMPION: target, "history": history}, generation)
        except storage.ConflictError as exc:
            now, _ = self._read_aliases()
            raise self._moved(target, now.get(CHAMPION), expected_name, raced=True) from exc
        return self.get(target)

    def _moved(
        self, target: str, current: str | None, expected: str | None, *, raced: bool = False
    ) -> ChampionMoved:
        when = "while this promotion was writing" if raced else "since the candidate was evaluated"
        return ChampionMoved(
            f"{self.model_name}: the champion moved {when}: it is {current or 'none'}, but {target} was "
            f"evaluated against {expected or 'no champion'}; re-evaluate {target} against "
            f"{current or 'no champion'} and promote again",
            current=current,
            expected=expected,
        )

    @staticmethod
    def _entry(version: str, previous: str | None, reason: str, kind: str) -> dict[str, Any]:
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("reason must say why the champion moves (it is written to the history)")
        return {"version": version, "previous": previous, "at": utc_now(), "reason": reason, "kind": kind}

    @staticmethod
    def _lineup(history: Sequence[Mapping[str, Any]]) -> list[str]:
        """Champions in order: promotions push, rollbacks pop; the last one is current."""
        stack: list[str] = []
        for e in history:
            if e.get("kind") == "rollback":
                if stack:
                    stack.pop()
            else:
                stack.append(e["version"])
        return stack

    def rollback(self, *, reason: str) -> VersionRecord:
        """Make the champion before the current one current again; recorded in the history.

        Repeated rollbacks walk further back (v1 -> v2 -> v3, rollback -> v2, rollback -> v1).

        Raises:
            RegistryError: there is no earlier champion to go back to.
            ChampionMoved: the alias changed while the rollback was writing.
        """
        value, generation = self._read_aliases()
        current = value.get(CHAMPION)
        lineup = self._lineup(value.get("history", []))
        if current is None or len(lineup) < 2:
            raise RegistryError(
                f"{self.model_name}: no previous champion to roll back to (champion is {current or 'none'}"
                f", history has {len(value.get('history', []))} entries)"
            )
        previous = lineup[-2]
        history = [*value.get("history", []), self._entry(previous, current, reason, "rollback")]
        try:
            self._write_aliases({CHAMPION: previous, "history": history}, generation)
        except storage.ConflictError as exc:
            now, _ = self._read_aliases()
            raise ChampionMoved(
                f"{self.model_name}: the champion alias changed during the rollback (now "
                f"{now.get(CHAMPION) or 'none'}); check `show()` and roll back again if still wanted",
                current=now.get(CHAMPION),
                expected=current,
            ) from exc
        return self.get(previous)

    def show(self) -> dict[str, Any]:
        """A summary for the CLI: champion, versions (with key metrics and blessing) and alias history."""
        value, _ = self._read_aliases()
        versions = []
        for r in self.versions():
            versions.append(
                {
                    "version": r.version,
                    "provider": r.provider,
                    "created_at": r.created_at,
                    "data_hash": r.data_hash,
                    "n_examples": r.n_examples,
                    "metrics": {k: v for k, v in r.metrics.items() if isinstance(v, int | float)},
                    "blessed": None if r.blessing is None else r.blessing.get("blessed"),
                    "champion": r.version == value.get(CHAMPION),
                }
            )
        return {
            "model_name": self.model_name,
            "root": self.root,
            "champion": value.get(CHAMPION),
            "versions": versions,
            "history": list(value.get("history", [])),
        }
