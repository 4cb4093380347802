"""wsebench's simulator: train a compiled Plan on NumPy/CuPy and time it from the data."""
