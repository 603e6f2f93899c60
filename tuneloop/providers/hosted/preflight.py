"""Preflight of a hosted job: a retired, unknown or non-tunable model, an over-limit dataset or an
estimate over the run's budget is refused before anything is uploaded or paid."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from tuneloop.providers.base import PreflightError
from tuneloop.providers.hosted.config import HostedConfig


def load_catalog_for(cfg: HostedConfig):
    """The catalog the config names (or the packaged one)."""
    from tuneloop.catalog import CatalogError, load_catalog

    try:
        return load_catalog(cfg.catalog or None)
    except (CatalogError, OSError) as exc:
        raise PreflightError(f"catalog={cfg.catalog!r}: {exc}") from exc


def check_model(
    catalog,
    provider: str,
    base_model: str,
    *,
    platform: str | None = None,
    kind: str = "fine-tune",
    today: dt.date | None = None,
    hint: str = "",
):
    """The catalog entry of ``base_model``, refused if unknown, retired, not tunable or the wrong kind.

    ``hint`` is appended to a refusal (e.g. another method that still works).

    Raises:
        PreflightError: naming the model, what is wrong and the models that would work.
    """
    from tuneloop.catalog import CatalogError

    today = today or dt.date.today()

    def usable() -> list[str]:
        return [
            m.name
            for m in catalog.models
            if m.provider == provider and not m.is_retired(today) and m.kind == kind
            and (platform is None or m.platform == platform) and (m.tunable or kind != "fine-tune")
        ]

    try:
        info = catalog.model(provider, base_model or None)
    except CatalogError as exc:
        raise PreflightError(f"base_model={base_model!r}: {exc}") from exc
    if info.is_retired(today):
        alternatives = usable()
        raise PreflightError(
            f"base_model={info.name!r} reached its end of life on {info.end_of_life.isoformat()} "
            f"(today is {today.isoformat()}); {provider} no longer tunes or serves it. Set base_model to a "
            f"current model: {alternatives or 'none listed — add one to the catalog'}{hint}"
        )
    if platform is not None and info.platform != platform:
        raise PreflightError(
            f"base_model={info.name!r} runs on {info.platform}, not {platform}; pick one of {usable()}"
        )
    if kind == "fine-tune" and (not info.tunable or info.kind != "fine-tune"):
        raise PreflightError(
            f"base_model={info.name!r} cannot be fine-tuned ({info.kind}); pick a tunable model: {usable()}{hint}"
        )
    if kind != "fine-tune" and info.kind != kind:
        raise PreflightError(f"base_model={info.name!r} is a {info.kind} model, not {kind}; pick one of {usable()}")
    return info


def resolve_file(files: Mapping[str, str], fmt: str, split: str) -> str | None:
    """The rendered ``fmt`` file of ``split``: ``files[split]``, or its sibling ``<fmt>/<split>.jsonl``.

    A dataset keeps one folder per format (``<dataset>/<format>/<split>.jsonl``); when ``files``
    points at another format's folder, the provider's own folder next to it is used. A dataset
    published to ``gs://`` is mirrored locally first (:func:`tuneloop.storage.download_dir`), so the
    path returned is always a local file that preflight validates and submit uploads.
    """
    from tuneloop import storage

    path = files.get(split)
    if not path:
        return None
    if storage.is_remote(path):
        return _local_copy(path, fmt, split)
    p = Path(path)
    if p.parent.name != fmt:
        sibling = p.parent.parent / fmt / p.name
        if sibling.exists():
            return str(sibling)
        raise PreflightError(
            f"files[{split!r}]={path!r} is not a {fmt!r} file and {sibling} does not exist; render the dataset "
            f"with the {fmt!r} format (prepare_dataset formats=[{fmt!r}])"
        )
    return path


def _local_copy(uri: str, fmt: str, split: str) -> str | None:
    """The local mirror of the remote ``fmt`` file of ``split`` (None when the dataset has no such file)."""
    from tuneloop import storage

    folder, _, name = uri.rstrip("/").rpartition("/")
    dataset, _, fmt_dir = folder.rpartition("/")
    wanted = storage.join(dataset, fmt)
    if name in storage.list_files(wanted):  # storage errors (credentials, permissions) propagate as they are
        return str(storage.download_dir(wanted) / name)
    if fmt_dir != fmt:
        raise PreflightError(
            f"files[{split!r}]={uri!r} is not a {fmt!r} file and {storage.join(wanted, name)} does not exist; "
            f"render the dataset with the {fmt!r} format (prepare_dataset formats=[{fmt!r}])"
        )
    return None


def check_file(path: str, fmt: str, info, *, split: str, epochs: int | None, catalog=None):
    """Validate a rendered file against the model's limits; raise PreflightError listing the problems."""
    from tuneloop.formats import validate_file

    if not Path(path).is_file():
        raise PreflightError(f"{split} file {path} does not exist; render the dataset with the {fmt!r} format first")
    report = validate_file(path, fmt, model=info.name, split=split, epochs=epochs, catalog=catalog)
    if not report.ok:
        raise PreflightError(
            f"{split} file {path} breaks the limits of {info.name} (nothing was uploaded):\n"
            + report.summary(max_lines=10)
            + "\nFix the data (rejected rows go to quarantine when the dataset is rendered) or pick another model."
        )
    return report


def check_budget(cost: float | None, cfg: HostedConfig, info, *, tokens: int, epochs: int) -> list[str]:
    """Refuse an estimate above ``budget_usd`` (or an unpriced model unless allowed); returns notes."""
    if cost is None:
        if not cfg.allow_unpriced:
            raise PreflightError(
                f"base_model={info.name!r} has no published training price in the catalog, so the cost of "
                f"{tokens:,} tokens x {epochs} epochs cannot be checked against a budget; add "
                "price_per_1m_training_tokens to the catalog, or set hyperparameters.allow_unpriced=true"
            )
        return [f"unpriced model: {tokens:,} training tokens x {epochs} epochs, cost not checked (allow_unpriced)"]
    if cost > 0 and cfg.budget_usd is None:
        raise PreflightError(
            f"hyperparameters.budget_usd is not set; this run is estimated at ${cost:,.2f} ({tokens:,} tokens x "
            f"{epochs} epochs on {info.name}). Set budget_usd to the most this run may spend"
        )
    if cfg.budget_usd is not None and cost > cfg.budget_usd:
        raise PreflightError(
            f"estimated training cost ${cost:,.2f} ({tokens:,} tokens x {epochs} epochs at "
            f"${info.price_per_1m_training_tokens}/1M tokens on {info.name}) is over budget_usd=${cfg.budget_usd:,.2f}; "
            "raise budget_usd, use fewer epochs or a cheaper model, or train on fewer examples (nothing was uploaded)"
        )
    return [f"estimated cost ${cost:,.4f} within budget ${cfg.budget_usd if cfg.budget_usd is not None else 0:,.2f}"]


def read_bytes(uri: str) -> bytes:
    """The bytes of a rendered file (a local path, or a URI tuneloop.storage can read)."""
    from tuneloop import storage

    return storage.read_bytes(uri)
