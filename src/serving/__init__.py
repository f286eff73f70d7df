"""Putting a trained model to work: ONNX export and ONNX Runtime inference, an HTTP server, a spaCy component.

Serving code builds on `src.inference` (windows, decoding, offsets), never the reverse.
"""
