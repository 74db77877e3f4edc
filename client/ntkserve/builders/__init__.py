"""The `ntkserve.stax` builders, one module per family; `ntkserve.stax` re-exports them."""
