"""The container images the components run on: one repository setting, tags from the source, digests.

Three images, one Dockerfile each under ``containers/<kind>/``:

==============  ========================  =============================================
kind            image name                runs
==============  ========================  =============================================
base            tuneloop-base             every lightweight component (CPU)
trainer-gpu     tuneloop-trainer-gpu      oss-lora training/evaluation, the self-play learner
selfplay-cpu    tuneloop-selfplay-cpu     self-play shards and the gauntlet (CPU)
==============  ========================  =============================================

* **Repository**: one setting, ``TUNELOOP_IMAGE_REPOSITORY`` or ``--image-repository`` (on
  ``tuneloop compile``/``submit``/``schedule create``; ``IMAGE_REPOSITORY=`` on ``make images`` and
  ``make function-source``), e.g. ``europe-west4-docker.pkg.dev/my-project/tuneloop``.
* **Tag**: the package version from ``tuneloop/version.py`` (the source of truth, not the installed
  metadata, so a bumped checkout compiles the new tag without a reinstall).
* **Digests**: tags can be pushed over; a digest cannot. ``--image-digest KIND=sha256:...`` or a lock
  file (``make images`` writes ``build/images.lock.json`` after pushing) pins each image by digest, so
  a template a schedule runs never changes under it.

The components are compiled with the default references (:data:`DEFAULT`); the compiled spec's
images are then rewritten to the chosen :class:`ImageSet` (:func:`tuneloop.compiled.rewrite`), so
importing the pipelines never depends on the environment and ``make compile`` stays deterministic.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneloop.version import __version__

REPOSITORY_ENV = "TUNELOOP_IMAGE_REPOSITORY"
LOCK_ENV = "TUNELOOP_IMAGE_LOCK"
# The compiled-in default: what the committed YAML names. Not a repository you can pull from; set yours.
DEFAULT_REPOSITORY = "us-docker.pkg.dev/tuneloop/images"
DEFAULT_LOCK = "build/images.lock.json"
# kind -> image name (the Dockerfile of a kind is containers/<kind>/Dockerfile)
IMAGES: Mapping[str, str] = {
    "base": "tuneloop-base",
    "trainer-gpu": "tuneloop-trainer-gpu",
    "selfplay-cpu": "tuneloop-selfplay-cpu",
}
KIND_OF_NAME: Mapping[str, str] = {v: k for k, v in IMAGES.items()}
LOCK_FORMAT = 1

# Docker reference grammar (distribution/reference), lowercase: an optional registry host[:port],
# then path components of [a-z0-9] separated by '.', '_', '__' or dashes.
_HOST = r"(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]{1,5})?)"
_COMPONENT = r"(?:[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)"
_REPOSITORY = re.compile(rf"^(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class ImageError(ValueError):
    """An image setting is invalid; the message names the setting, the value and the fix."""


def _close_kind(kind: str) -> str:
    import difflib

    k = str(kind).lower().strip()
    hit = [n for n in IMAGES if k and (k in n or n in k)] or difflib.get_close_matches(k, list(IMAGES), n=1, cutoff=0.5)
    return f" (did you mean {hit[0]!r}?)" if hit else ""


def check_kind(kind: str, where: str = "image kind") -> str:
    """``kind`` if it is one of :data:`IMAGES` (an image name such as ``tuneloop-base`` is accepted too)."""
    if kind in IMAGES:
        return kind
    if kind in KIND_OF_NAME:
        return KIND_OF_NAME[kind]
    raise ImageError(f"{where} {kind!r} is not one of {list(IMAGES)}{_close_kind(kind)}")


def check_repository(value: str, where: str = "--image-repository") -> str:
    """A repository such as ``europe-west4-docker.pkg.dev/PROJECT/REPO`` (a trailing ``/`` is dropped).

    Raises:
        ImageError: a scheme, a tag or digest, upper case, spaces or another character Docker refuses.
    """
    if not isinstance(value, str) or not value.strip():
        raise ImageError(f"{where} is empty; write e.g. europe-west4-docker.pkg.dev/PROJECT/REPOSITORY")
    repo = value.strip().rstrip("/")
    if "://" in repo:
        raise ImageError(
            f"{where}={value!r}: a repository has no scheme; write {repo.split('://', 1)[1]!r}"
        )
    last = repo.rsplit("/", 1)[-1]
    if "@" in repo or (":" in last and "/" in repo):
        raise ImageError(
            f"{where}={value!r} names a tag or digest; give only the repository "
            f"({repo.split('@')[0].rsplit(':', 1)[0]!r}): the tag is the package version and digests "
            "come from --image-digest or the lock file"
        )
    if repo != repo.lower():
        raise ImageError(f"{where}={value!r}: image repositories are lowercase; write {repo.lower()!r}")
    if not _REPOSITORY.match(repo):
        raise ImageError(
            f"{where}={value!r} is not an image repository; write HOST/PATH with lowercase letters, "
            "digits, '.', '_' and '-', e.g. europe-west4-docker.pkg.dev/PROJECT/REPOSITORY"
        )
    return repo


def check_digest(value: str, where: str = "digest") -> str:
    """``sha256:<64 hex>``; a ``repo/name@sha256:...`` reference gives its digest.

    Raises:
        ImageError: anything else.
    """
    digest = str(value).strip().rsplit("@", 1)[-1].lower()
    if not _DIGEST.match(digest):
        raise ImageError(
            f"{where}={value!r} is not an image digest; write sha256:<64 hex digits> (`docker inspect "
            "--format '{{index .RepoDigests 0}}' IMAGE` prints it after a push)"
        )
    return digest


def parse_digests(items: Sequence[str]) -> dict[str, str]:
    """``["base=sha256:...", ...]`` (the ``--image-digest`` option) -> ``{kind: digest}``.

    Raises:
        ImageError: an item that is not ``KIND=DIGEST``, an unknown kind, a bad digest, a kind twice.
    """
    out: dict[str, str] = {}
    for item in items:
        kind, sep, digest = str(item).partition("=")
        if not sep or not kind.strip():
            raise ImageError(
                f"--image-digest {item!r}: write KIND=sha256:<64 hex>, KIND one of {list(IMAGES)}"
            )
        k = check_kind(kind.strip(), "--image-digest kind")
        if k in out:
            raise ImageError(f"--image-digest: {k!r} is given twice")
        out[k] = check_digest(digest, f"--image-digest {k}")
    return out


@dataclass(frozen=True)
class ImageSet:
    """The images a compiled pipeline runs: repository, tag (the package version) and optional digests.

    Attributes:
        repository: Where the three images live, e.g. ``europe-west4-docker.pkg.dev/PROJECT/REPO``.
        version: The tag (default: ``tuneloop.version.__version__``).
        digests: ``{kind: "sha256:..."}``; a pinned kind is referenced by digest, the others by tag.
        source: Where the setting came from (for messages): default, environment, option, lock file.
    """

    repository: str = DEFAULT_REPOSITORY
    version: str = __version__
    digests: Mapping[str, str] = field(default_factory=dict)
    source: str = "default"

    def __post_init__(self) -> None:
        object.__setattr__(self, "repository", check_repository(self.repository, "repository"))
        if not _TAG.match(str(self.version)):
            raise ImageError(f"version={self.version!r} is not a valid image tag")
        checked = {check_kind(k, "digest kind"): check_digest(v, f"digest of {k}") for k, v in self.digests.items()}
        object.__setattr__(self, "digests", dict(sorted(checked.items())))

    @property
    def is_default(self) -> bool:
        """Whether this names the compiled-in placeholder repository."""
        return self.repository == DEFAULT_REPOSITORY

    def ref(self, kind: str) -> str:
        """The reference of one image: ``REPO/NAME@sha256:...`` when pinned, else ``REPO/NAME:VERSION``."""
        kind = check_kind(kind)
        digest = self.digests.get(kind)
        base = f"{self.repository}/{IMAGES[kind]}"
        return f"{base}@{digest}" if digest else f"{base}:{self.version}"

    def refs(self) -> dict[str, str]:
        """``{kind: reference}`` for the three images."""
        return {k: self.ref(k) for k in IMAGES}

    def to_lock(self) -> dict[str, Any]:
        """The lock file's content (see :func:`read_lock`)."""
        return {
            "format": LOCK_FORMAT,
            "repository": self.repository,
            "version": self.version,
            "images": {k: {"name": IMAGES[k], "digest": self.digests.get(k)} for k in IMAGES},
        }


DEFAULT = ImageSet()


def read_lock(path: str | os.PathLike, *, version: str = __version__) -> ImageSet:
    """The :class:`ImageSet` a lock file (``make images`` writes one after pushing) pins.

    Raises:
        ImageError: the file is missing or malformed, or it records images of another package version
            (they would run other component code than the template's).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError as exc:
        raise ImageError(f"--image-lock {p}: no such file; `make images` writes it after pushing") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ImageError(f"--image-lock {p}: not a JSON lock file ({exc}); rerun `make images`") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), dict) or "repository" not in data:
        raise ImageError(f"--image-lock {p}: expected {{repository, version, images}}; rerun `make images`")
    if str(data.get("version")) != version:
        raise ImageError(
            f"--image-lock {p} pins images of tuneloop {data.get('version')!r}, but this is {version}: "
            "their code differs from the components you compile; run `make images` for this version"
        )
    digests = {}
    for kind, entry in data["images"].items():
        digest = entry.get("digest") if isinstance(entry, dict) else entry
        if digest:
            digests[check_kind(kind, f"--image-lock {p}: image")] = check_digest(digest, f"--image-lock {p}: {kind}")
    try:
        return ImageSet(str(data["repository"]), version, digests, source=f"lock file {p}")
    except ImageError as exc:
        raise ImageError(f"--image-lock {p}: {exc}") from exc


def resolve(
    repository: str | None = None,
    *,
    digests: Sequence[str] | Mapping[str, str] = (),
    lock: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
) -> ImageSet:
    """The images to compile into a template, from the options and (when given) the environment.

    Precedence: ``repository`` (the option), then the lock file's repository, then
    ``TUNELOOP_IMAGE_REPOSITORY`` in ``environ``, then the default. A lock file comes from ``lock`` or
    ``TUNELOOP_IMAGE_LOCK``; ``digests`` add to (and override) its digests. ``environ=None`` reads no
    environment at all (``python -m compile``: the committed YAML does not depend on who compiles it).

    Raises:
        ImageError: a bad value, or an option that contradicts the lock file's repository.
    """
    env = environ if environ is not None else {}
    lock = lock or env.get(LOCK_ENV) or None
    extra = dict(digests) if isinstance(digests, Mapping) else parse_digests(digests)
    extra = {check_kind(k): check_digest(v, f"--image-digest {k}") for k, v in extra.items()}
    if lock:
        locked = read_lock(lock)
        if repository and check_repository(repository) != locked.repository:
            raise ImageError(
                f"--image-repository {repository!r} differs from {locked.source}'s repository "
                f"{locked.repository!r}, whose digests were recorded there; drop one of them"
            )
        return ImageSet(locked.repository, locked.version, {**locked.digests, **extra}, source=locked.source)
    if repository:
        return ImageSet(check_repository(repository), digests=extra, source="--image-repository")
    if env.get(REPOSITORY_ENV, "").strip():
        return ImageSet(
            check_repository(env[REPOSITORY_ENV], REPOSITORY_ENV), digests=extra, source=REPOSITORY_ENV
        )
    return ImageSet(digests=extra)


def image_kind(ref: str) -> str | None:
    """The kind of a tuneloop image reference (any repository, tag or digest), else None."""
    name = str(ref).split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    return KIND_OF_NAME.get(name)


def placeholder_message(what: str) -> str:
    return (
        f"{what} names images in {DEFAULT_REPOSITORY}, the compiled-in placeholder nobody can pull; "
        f"push the images to your own repository (make images IMAGE_REPOSITORY=...) and pass "
        f"--image-repository REGION-docker.pkg.dev/PROJECT/REPO or set {REPOSITORY_ENV}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tuneloop.images ref KIND`` / ``lock --out FILE KIND=REF...`` (used by ``make images``)."""
    parser = argparse.ArgumentParser(prog="python -m tuneloop.images", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    ref = sub.add_parser("ref", help="print an image's reference")
    ref.add_argument("kind", help=f"one of {list(IMAGES)}")
    lock = sub.add_parser("lock", help="write the lock file from pushed references (REPO/NAME@sha256:...)")
    lock.add_argument("--out", default=DEFAULT_LOCK)
    lock.add_argument("pushed", nargs="+", help="KIND=REPO/NAME@sha256:... (docker inspect RepoDigests)")
    for p in (ref, lock):
        p.add_argument("--image-repository", default="", help=f"default: ${REPOSITORY_ENV}")
    args = parser.parse_args(argv)
    try:
        # tags only: a lock file (TUNELOOP_IMAGE_LOCK) must not turn the build's tags into digests
        images = resolve(args.image_repository or None, environ={REPOSITORY_ENV: os.environ.get(REPOSITORY_ENV, "")})
        if args.cmd == "ref":
            print(images.ref(args.kind))
            return 0
        digests = {}
        for item in args.pushed:
            kind, _, pushed = item.partition("=")
            kind = check_kind(kind)
            if not pushed.startswith(f"{images.repository}/{IMAGES[kind]}@"):
                raise ImageError(f"{item!r} was not pushed to {images.repository}/{IMAGES[kind]}")
            digests[kind] = check_digest(pushed)
        pinned = ImageSet(images.repository, images.version, digests)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(pinned.to_lock(), indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.out}: " + ", ".join(pinned.refs().values()))
        return 0
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
