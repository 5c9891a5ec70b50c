"""The plugin's Qt code: the "PKN restoration" dock widget and its parts.

Qt lives here only; the rest of :mod:`napari_pkn` is Qt-free. Importing these modules is
cheap (no torch): the widget loads pkn's models when it is created.
"""
