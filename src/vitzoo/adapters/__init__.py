"""Converters between other formats and vitzoo's state dict: one pure module per format."""
