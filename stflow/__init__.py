"""stflow: predict spatial gene expression from H&E histology with STFlow."""

__version__ = "0.1.0"
