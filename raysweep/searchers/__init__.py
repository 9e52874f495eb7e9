"""Ray Tune searchers raysweep implements (one module per searcher).

Imported lazily: ``import raysweep.searchers`` does not load Ax or torch.
"""

__all__ = ["AxSearcher"]


def __getattr__(name: str):
    if name == "AxSearcher":
        from raysweep.searchers.ax import AxSearcher

        return AxSearcher
    raise AttributeError(f"module 'raysweep.searchers' has no attribute {name!r}")
