"""Build of interir: the Python package (configured in pyproject.toml) plus, when a CUDA toolkit and a CUDA
build of torch are present at build time, the CUDA extension interir._C from csrc/.

    pip install --no-build-isolation -e .              # builds interir._C if nvcc + CUDA torch are found
    FORCE_CUDA=1 pip install --no-build-isolation -e . # must build it (fails, saying why, if it cannot)
    INTERIR_BUILD_CUDA=0 pip install -e .              # never builds it

TORCH_CUDA_ARCH_LIST picks the GPU architectures (default: the visible GPUs' plus 9.0; 9.0 alone without a GPU).
Without the extension the `cuda` backend reports itself unavailable and says why; everything else works.
"""
import glob
import os
import sys

from setuptools import setup

CSRC = "csrc"
SOURCES = [f"{CSRC}/bindings.cpp", f"{CSRC}/cuda_ops.cu"]


def _say(message: str) -> None:
    print(f"interir setup: {message}", file=sys.stderr)


def _fail(message: str) -> None:
    sys.exit(f"interir setup: {message}")


def _default_arch_list(torch) -> str:
    archs = {"9.0"}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(i)
            archs.add(f"{major}.{minor}")
    return ";".join(sorted(archs, key=float))


def cuda_extension():
    """(ext_modules, cmdclass) for interir._C, or ([], {}) with the reason printed when it is not built."""
    force = os.environ.get("FORCE_CUDA", "") == "1"
    if os.environ.get("INTERIR_BUILD_CUDA", "") == "0":
        _say("INTERIR_BUILD_CUDA=0: not building the CUDA extension")
        return [], {}
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CUDAExtension
    except ImportError:
        if force:
            _fail("FORCE_CUDA=1 but torch is not importable at build time; install torch first and use "
                  "pip install --no-build-isolation")
        _say("torch is not importable at build time (build isolation?): not building the CUDA extension; "
             "use pip install --no-build-isolation to build it")
        return [], {}
    missing = []
    if CUDA_HOME is None:
        missing.append("no CUDA toolkit (nvcc) found; set CUDA_HOME")
    if torch.version.cuda is None:
        missing.append(f"torch {torch.__version__} is a CPU-only build")
    if missing:
        if force:
            _fail("FORCE_CUDA=1 but the CUDA extension cannot be built: " + "; ".join(missing))
        _say("not building the CUDA extension: " + "; ".join(missing))
        return [], {}
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", _default_arch_list(torch))
    _say(f"building interir._C for TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']} "
         f"(torch {torch.__version__}, CUDA {torch.version.cuda}, {CUDA_HOME})")

    class Build(BuildExtension):
        """BuildExtension that removes a stale interir._C first and names the failure instead of a traceback."""

        def run(self):
            for stale in glob.glob(os.path.join("interir", "_C.*.so")) if self.inplace else []:
                os.remove(stale)
            try:
                super().run()
            except Exception as exc:  # the compiler's own output is above this line
                for partial in glob.glob(os.path.join("interir", "_C.*.so")) if self.inplace else []:
                    os.remove(partial)
                _fail(f"building the CUDA extension interir._C failed ({type(exc).__name__}: {exc}); the compiler "
                      "output above says why. Set INTERIR_BUILD_CUDA=0 to install without it.")

    nvcc = ["-O3", "--extended-lambda", "-lineinfo"]
    if os.environ.get("INTERIR_PTXAS_VERBOSE") == "1":  # registers, stack and spills of every kernel, in the log
        nvcc.append("-Xptxas=-v")
    ext = CUDAExtension("interir._C", SOURCES, extra_compile_args={"cxx": ["-O3"], "nvcc": nvcc})
    return [ext], {"build_ext": Build.with_options(use_ninja=True)}


ext_modules, cmdclass = cuda_extension()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
