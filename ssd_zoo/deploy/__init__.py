"""Deployment on CPUs: one ONNX graph with decoding and NMS inside, the runtimes that run it, int8.

    export.py     ONNX (and OpenVINO IR through it) of a whole SSD, int8 by ONNX Runtime or NNCF
    runtime.py    an exported file run by onnxruntime or OpenVINO with the model's own I/O contract
    quantize.py   PT2E int8 of the network (torchao), lowered to oneDNN
"""
