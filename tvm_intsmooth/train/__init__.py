"""Training with Gaussian noise augmentation and ONNX export (needs the optional torch extra)."""
