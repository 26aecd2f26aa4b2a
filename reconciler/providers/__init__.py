"""Layer 3: the platforms.

Rule: `base.py` is the protocol (types, signatures and pure helpers, no I/O: layer 2,
which the planner imports) and `http.py` the one HTTP client (layer 2); `plugin.py` says
how a platform registers itself. Each platform lives in a subpackage of its own (its
typed specs, client and field policies), imports those three and layers 0-2, never
imports another platform's subpackage, and is loaded only through its entry point by
the composition root (layer 7).
"""
