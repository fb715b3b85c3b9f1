"""Detection where users point it: images, folders, large images by tiles, videos and streams, with tracking,
and the pictures, videos and JSON files people read.

    predict.py   images, files and folders in batches; tiles of large images
    video.py     frames decoded with PyAV, detected in batches, tracked; annotated videos written
    draw.py      detections drawn so that people can read them
    results.py   pictures, videos, JSON and JSON lines, each written whole or not at all
"""
