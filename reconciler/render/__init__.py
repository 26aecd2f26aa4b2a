"""Layer 6: what users read: text (rich), markdown, JSON, graph drawings.

Rule: imports layers 1-5 and libraries; returns strings or writes to a given console;
decides nothing.
"""
