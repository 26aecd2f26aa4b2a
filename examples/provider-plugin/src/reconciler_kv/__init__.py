"""An example provider plugin for reconciler: buckets and keys of a tiny HTTP
key-value store (`server`), written against reconciler's public plugin interface only.

Modules: `plugin` (what reconciler reads: kinds, target, policies, connect), `provider`
(the policies and the calls), `server` (the store itself, also served in-process for
`url: embedded`).
"""
