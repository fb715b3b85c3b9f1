"""Deployment on CPUs: one ONNX graph with decoding and NMS inside, the runtimes that run it, int8.

    export.py     ONNX (and OpenVINO IR through it) of a whole SSD, int8 by ONNX Runtime or NNCF
    runtime.py    an exported file run by onnxruntime or OpenVINO with the model's own I/O contract
    cpu.py        what this CPU has for int8 (AMX, VNNI, AVX-512, AVX2), from /proc/cpuinfo
    quantize.py   ssd_zoo.quantize: the fastest int8 backend installed for this CPU (a measured table), and why
    pt2e.py       PT2E int8 of the network (torchao), lowered to oneDNN per batch size
"""
