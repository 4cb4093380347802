"""The ISPD 2020 wafer-placement contest on the compiler's search and placer: reader, kernel library,
solver, writer and an independent validator."""
