"""Box and image-level annotations as an undoable document, with sidecar persistence and exports."""
