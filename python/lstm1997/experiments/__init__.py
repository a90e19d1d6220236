"""The paper's experiments (Hochreiter & Schmidhuber 1997, section 5): data and models."""
