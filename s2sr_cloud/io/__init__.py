"""Raster I/O: windowed reads and atomic COG writes (rasterio/GDAL)."""
