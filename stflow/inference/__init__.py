"""Applying a trained model folder, one way for a fold's test sections and for new slides:
the folder loaded and checked (:mod:`stflow.inference.model_folder`), the prediction built
and written as AnnData h5ad (:mod:`stflow.inference.prediction_anndata`, in row chunks by
:mod:`stflow.inference.chunked_h5ad`)."""
