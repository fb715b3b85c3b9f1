"""The SSD algorithm as pure functions: default boxes, box coding, matching, loss, post-processing."""
