"""CAE Studio core: design, build, train and explore convolutional autoencoders.

This package never imports streamlit; TensorFlow is imported lazily inside the functions that need it.
"""

__version__ = "0.1.0"
