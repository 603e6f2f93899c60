"""Container images the components run on; tags follow the package version (one place).

Change ``IMAGE_REPOSITORY`` to your Artifact Registry repository; ``make images`` builds and pushes
``containers/base``, ``containers/trainer-gpu`` and ``containers/selfplay-cpu`` under these names.
"""

from importlib.metadata import PackageNotFoundError, version

IMAGE_REPOSITORY = "us-docker.pkg.dev/tuneloop/images"

try:
    VERSION = version("tuneloop")
except PackageNotFoundError:  # running from a source tree that was not installed
    VERSION = "dev"

BASE_IMAGE = f"{IMAGE_REPOSITORY}/tuneloop-base:{VERSION}"
GPU_IMAGE = f"{IMAGE_REPOSITORY}/tuneloop-trainer-gpu:{VERSION}"
SELFPLAY_IMAGE = f"{IMAGE_REPOSITORY}/tuneloop-selfplay-cpu:{VERSION}"
