"""Numba kernels: pure functions, arrays in and arrays out; nothing here imports ``ribin``."""
