"""Registry entries of the matrix-aware optimizers (SWAN, GaLore, Fira, FRUGAL)."""
