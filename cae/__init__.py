"""CAE Studio core: design, build, train and explore convolutional autoencoders.

This package never imports streamlit; TensorFlow is imported lazily inside the functions that need it.
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) is noise for our users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
