"""The tuners. Each is a :class:`~tuneloop.providers.base.Provider` subclass that declares itself (name,
training format, hosted or not, pip extra, CPU or GPU image, task kinds, config class);
:mod:`tuneloop.providers.registry` finds them (this package's modules and the ``tuneloop.providers``
entry-point group) and derives every list of names from those declarations.

Provider modules import their SDKs only when a job runs, so picking ``sklearn`` never imports torch
or a cloud SDK.
"""

from tuneloop.providers.registry import (
    ProviderNotFound,
    canonical_name,
    format_of,
    formats_of,
    get_provider,
    hosted_names,
    provider_class,
    provider_classes,
    provider_names,
    resolve,
)

__all__ = [
    "ProviderNotFound",
    "canonical_name",
    "format_of",
    "formats_of",
    "get_provider",
    "hosted_names",
    "provider_class",
    "provider_classes",
    "provider_names",
    "resolve",
]
