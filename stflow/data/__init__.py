"""Data in: sources and the simulator, ingest, patches, encoders and embedding, the kNN
graph, target genes, folds, and the `Slide` that joins them for the models."""
