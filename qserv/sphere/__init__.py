"""Spherical geometry: HEALPix chunks, overlap, regions, and the spatial SQL functions."""
