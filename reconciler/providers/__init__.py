"""Layer 3: the platforms.

Rule: `base.py` is the protocol (types, signatures and pure helpers, no I/O) and is the
only module of this package that layer 2 may import. Each platform lives in a subpackage
of its own (its typed specs, httpx client and field policies), imports layers 1-2 and
`base.py`, and never imports another platform's subpackage; only the command line
(layer 7) chooses which to load.
"""
