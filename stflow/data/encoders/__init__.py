"""Patch encoders: a registry of frozen image models that turn patches into feature vectors."""

from stflow.data.encoders.builders import (
    ENCODERS,
    PRECISIONS,
    Encoder,
    EncoderSpec,
    describe_encoders,
    get_encoder_spec,
    load_encoder,
)

__all__ = ["ENCODERS", "PRECISIONS", "Encoder", "EncoderSpec", "describe_encoders",
           "get_encoder_spec", "load_encoder"]
