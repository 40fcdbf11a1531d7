"""Small studies that illustrate the method (``qflow toy2d``)."""
