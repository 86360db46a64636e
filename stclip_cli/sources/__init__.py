"""What an input names, opened as a stream of frames: files (PyAV), frame folders, URLs, webcams, stdin."""
