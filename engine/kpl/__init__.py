"""KPL: training-free zero-shot classification of an image pool with retrieved knowledge.

Knowledge bases (``knowledge``), the open_clip backend and its feature cache (``clip``,
``cache``), the math on features (``proxies``, ``predict``), and the pool pipeline the CLI and
the GUI worker call (``classify``, ``evaluate``). Nothing here imports Qt.
"""

from engine.kpl.predict import METHOD_TITLES, METHODS, KplPrediction, Method, ProxyParams, kpl_predict
from engine.kpl.progress import Cancelled, CancelFlag, ProgressFn

__all__ = [
    "METHODS",
    "METHOD_TITLES",
    "Cancelled",
    "CancelFlag",
    "KplPrediction",
    "Method",
    "ProgressFn",
    "ProxyParams",
    "kpl_predict",
]
