"""Model files and inference."""
