"""A zoomable view of a slide in the browser (``stflow view``): the H&E as a Deep Zoom
pyramid shown by OpenSeadragon, the spots over it on a canvas, coloured by a chosen gene.

Modules: assets.py (OpenSeadragon, shipped with every view), pyramid.py (the DZI tiles),
spot_data.py (spots and per-gene values as small script files), page.py (the page),
build.py (one view from one h5ad), serve.py (open or serve a view).
"""
