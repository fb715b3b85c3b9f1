"""ssd_zoo's side-by-side benchmarks (ssd_zoo against torchvision, torchmetrics and a reference loop).

A package, so that its shared modules are imported by name (``benchmarks.harness``, ``benchmarks.reference``)
without patching ``sys.path``. Run the scripts as modules from the repository root, e.g.
``python -m benchmarks.inference --quick`` or ``python -m benchmarks.run_all --out benchmarks/RESULTS.md``.
"""
