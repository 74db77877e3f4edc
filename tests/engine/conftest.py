"""Engine tests run in float64 where they say so: enable x64 for the whole session."""

import jax

jax.config.update("jax_enable_x64", True)
