"""raysweep's Bayesian phases: a Ray Tune searcher on Ax's ``Client`` and BoTorch.

One :class:`AxSearcher` runs one Bayesian phase; :func:`make_ax_searcher`
builds it from the run directory (history, narrowed box, trials an interrupted
attempt already ran). The package's modules, one concept each:

``searcher``
    the Tune ``Searcher``: suggestions, how trials end in Ax, bookkeeping.
``coding``
    how raysweep's parameters are declared to Ax and how values cross over;
    the box in Ax's terms.
``model``
    the GP (fit through Ax's modular BoTorch generator) and the acquisition.
``starts``
    where quasi-random starts land inside the box.
``trials``
    what the searcher did with each trial (how its config was chosen, how it ended).
``settings``
    the searcher's arguments, checked once.
``subset``
    which observations the GP is fit on past a size.
``state``
    the saved state (Tune's experiment state, ``save`` / ``restore``), a mixin of the searcher.
``factory``
    a phase's searcher from the run directory's Parquet results.

Importing this package imports Ax and torch; ``raysweep.searchers`` does not.
"""

from raysweep.searchers.ax.factory import make_ax_searcher
from raysweep.searchers.ax.searcher import AX_OBJECTIVE, AxSearcher

__all__ = ["AX_OBJECTIVE", "AxSearcher", "make_ax_searcher"]
