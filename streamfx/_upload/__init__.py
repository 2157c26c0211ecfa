"""Uploads: `parse_multipart`, `Part` and the upload errors.

The one kind that flows inward: request body bytes -> `framing` (streamfx's boundary
scanner and the per-part limits; header values read by the grammar in `params`) ->
`multipart.PartStream` (the pull-driven stream of parts, the whole-body limit, the sniff
hook, the metrics) -> each `Part`'s content, read or saved (`save`). A per-kind package:
it imports the core layer, never another kind or an adapter, and no multipart library.

Private: import the public names from `streamfx`.
"""
