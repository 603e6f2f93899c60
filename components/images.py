"""The images compiled into every component's ``base_image``: the defaults of :mod:`tuneloop.images`.

These are deliberately fixed (no environment read at import), so the committed YAML is the same for
everyone. The images a template really runs are chosen when it is compiled or submitted:
``tuneloop compile|submit|schedule create --image-repository REPO`` (or ``TUNELOOP_IMAGE_REPOSITORY``),
``--image-digest KIND=sha256:...`` or ``--image-lock FILE`` rewrite every one of these references in
the compiled spec (:func:`tuneloop.compiled.rewrite`). The tag is ``tuneloop/version.py``'s version.
"""

from tuneloop.images import DEFAULT, DEFAULT_REPOSITORY

IMAGE_REPOSITORY = DEFAULT_REPOSITORY
VERSION = DEFAULT.version

BASE_IMAGE = DEFAULT.ref("base")
GPU_IMAGE = DEFAULT.ref("trainer-gpu")
SELFPLAY_IMAGE = DEFAULT.ref("selfplay-cpu")
