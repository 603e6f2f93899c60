"""tuneloop: keep models improving on their own data.

The engine: plain Python that never imports kfp. Components (``tuneloop.components``) and pipelines
(``tuneloop.pipelines``) are thin KFP wrappers over the functions here.
"""

from tuneloop.version import __version__

__all__ = ["__version__"]
