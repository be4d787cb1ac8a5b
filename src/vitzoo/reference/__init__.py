"""Independent references for checking conversions: Google's ViT forward pass written out in
float64 NumPy (:mod:`.jax_numpy`), and the check of a converted model against it
(:mod:`.verify`)."""

from .jax_numpy import jax_vit_forward
from .verify import verify_against_jax

__all__ = ["jax_vit_forward", "verify_against_jax"]
