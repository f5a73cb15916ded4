"""The model store: versioned model bundles on disk and their audit log."""
