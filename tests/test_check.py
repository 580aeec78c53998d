"""`interir check`: kernel correctness as a product command, and its static compile gate."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from interir import ops
from interir.cli import main

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = __import__("interir.ops.reference", fromlist=["TABLE"]).TABLE


def test_emulated_quick_check_passes_and_reports(tmp_path, capsys):
    """On a CPU the Triton interpreter and the CUDA host emulation (which the test suite selects) are proven."""
    out = tmp_path / "check.json"
    assert main(["check", "--device", "cpu", "--emulate", "--quick", "--dtypes", "float32,float16", "-q",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "0 failed" in text and "| kron_step |" in text
    report = json.loads(out.read_text())
    backends = {r["backend"] for r in report["results"]}
    assert {"triton", "cuda"} <= backends and report["emulated"] is True and report["complete"] is True
    assert all(r["status"] == "ok" for r in report["results"]), report["results"]
    assert {r["op"] for r in report["results"]} == set(ops.backends.op_names())


def test_a_check_cut_short_keeps_the_rows_it_finished(tmp_path, capsys, monkeypatch):
    """A GPU lease's time limit (SIGTERM/SIGINT mid-run): the JSON holds every finished row, marked incomplete,
    and the exit code is 1."""
    from interir.check import runtime

    def two_rows_then_interrupted(device, *, progress, **_):
        for backend in ("triton", "cuda"):
            progress(runtime.Row("kron_apply", "odd", "2×3", "float32", backend, "ok", "", 0.1, True, None, None), 0.0)
        raise KeyboardInterrupt

    monkeypatch.setattr(runtime, "run_checks", two_rows_then_interrupted)
    out = tmp_path / "check.json"
    assert main(["check", "--device", "cpu", "--emulate", "--dtypes", "float32", "-q", "--json", str(out)]) == 1
    assert "interrupted" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["complete"] is False and [r["backend"] for r in report["results"]] == ["triton", "cuda"]


def test_a_wrong_backend_fails_the_check(capsys):
    """A stand-in whose kron_apply is 1 % off: the check names it and exits 1."""
    wrong = dict(REFERENCE["kron_apply"])
    forward = wrong["forward"]
    wrong["forward"] = lambda *args: forward(*args) * 1.01
    ops.register_backend("offbyone", {"kron_apply": wrong}, auto_devices=())
    try:
        code = main(["check", "--device", "cpu", "--emulate", "--quick", "--dtypes", "float32", "-q"])
    finally:
        ops.unregister_backend("offbyone")
    text = capsys.readouterr().out
    assert code == 1
    rows = [line for line in text.splitlines() if "| offbyone |" in line and "kron_apply" in line]
    assert rows and all("FAIL: disagrees with the reference" in line for line in rows)


def test_on_a_cpu_without_emulation_it_says_why_nothing_is_checked(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert main(["check", "--device", "cpu", "--json", str(tmp_path / "check.json")]) == 0
    assert "no fused backend runs natively on a CPU" in capsys.readouterr().out
    report = json.loads((tmp_path / "check.json").read_text())  # the report says so too
    assert report["complete"] and report["results"] == [] and "no fused backend" in report["note"]


def test_bad_dtypes_are_one_line(capsys):
    assert main(["check", "--device", "cpu", "--dtypes", "float8"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--dtypes" in err and "\n" not in err


def _static(script: str) -> subprocess.CompletedProcess:
    """Run `script` with compiled (not interpreted) Triton kernels, as `interir check --static` does."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=ROOT)


def test_static_records_the_launches_a_gpu_would_make_and_compiles_one():
    proc = _static("""
        import json, torch
        from interir.check.static import compile_launch, record_launches, recording, _calls
        from interir.kernels import kron
        with recording(90) as launches:
            kron.kron_step(*(torch.randn(2, 3, 20, 20) for _ in range(5)), torch.tensor(0.1))
        kernels = sorted({fn.__name__ for fn, _ in launches})
        fn, c = launches[0]
        from interir.check.static import Launch, _freeze
        launch = Launch(fn.__name__, fn, _freeze(c["signature"]), _freeze(c["constants"]), _freeze(c["configs"][0]),
                        c["num_warps"], c["num_stages"], 1, "kron_step fwd", True)
        row = compile_launch(launch, 90)
        print(json.dumps({"kernels": kernels, "ok": row.ok, "regs": row.registers, "spill": row.spill_bytes,
                          "shared": row.shared_bytes, "mma": row.mma, "load": row.widest_load,
                          "signature": dict(c["signature"])}))
    """)
    if proc.returncode and "ptxas" in proc.stderr and "not found" in proc.stderr:
        pytest.skip("this Triton installation has no ptxas")
    assert proc.returncode == 0, proc.stderr[-2000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert facts["kernels"] == ["_chain_kernel"] and facts["signature"]["l_ptr"] == "*fp32"
    assert facts["ok"] and facts["regs"] > 0 and facts["spill"] == 0 and facts["shared"] > 0
    assert facts["load"] != "none"


def test_static_reports_the_conv_traffic_and_every_global_load_of_a_recorded_launch():
    proc = _static("""
        import json
        from interir.check.static import compile_launch, record_launches
        launch = next(l for l in record_launches("default") if l.kernel == "_conv_fwd_kernel"
                      and l.origin.startswith("modulated_conv fwd 96ch 64×64 bfloat16"))
        row = compile_launch(launch, 90)
        print(json.dumps({"ok": row.ok, "traffic": row.traffic, "loads": row.global_loads}))
    """)
    if proc.returncode and "ptxas" in proc.stderr and "not found" in proc.stderr:
        pytest.skip("this Triton installation has no ptxas")
    assert proc.returncode == 0, proc.stderr[-2000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert facts["ok"] and facts["traffic"]["activation_reads_per_block"] == 9
    assert set(facts["traffic"]["loaded_bytes"]) == {"x", "weight", "attention"}
    assert facts["loads"] and all(op.startswith(("LDG", "UTMALDG")) and n > 0 for op, n in facts["loads"].items())


def test_the_descriptor_conv_compiles_to_asynchronous_tma_loads_on_sm90():
    proc = _static("""
        import json
        from interir.check.static import compile_launch, record_launches
        from interir.kernels import modulated_conv, modulated_conv_tma
        index = len(modulated_conv.FWD.candidates) - len(modulated_conv_tma.CANDIDATES)  # the first descriptor config
        launch = next(l for l in record_launches("all") if l.kernel == "_conv_fwd_tma_kernel"
                      and l.origin == f"modulated_conv fwd 96ch 64×64 bfloat16 config {index}")
        row = compile_launch(launch, 90)
        print(json.dumps({"ok": row.ok, "spill": row.spill_bytes, "mma": row.mma, "loads": row.global_loads,
                          "traffic": row.traffic}))
    """)
    if proc.returncode and "ptxas" in proc.stderr and "not found" in proc.stderr:
        pytest.skip("this Triton installation has no ptxas")
    assert proc.returncode == 0, proc.stderr[-2000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert facts["ok"] and facts["spill"] == 0 and facts["mma"] == "HGMMA"
    assert any(op.startswith("UTMALDG") for op in facts["loads"]), facts["loads"]
    assert not any(op.startswith("LDG.E.U16") for op in facts["loads"])  # no 2-byte activation loads left
    assert facts["traffic"]["loaded_bytes"]["layout_copy"] > 0


def test_the_traffic_model_counts_what_the_conv_kernels_load():
    from interir.check.traffic import conv_traffic

    shape = dict(b=2, cin=32, cout=48, h=16, w=16, k=3, groups=1)  # 256 pixels a sample
    fwd = conv_traffic("_conv_fwd_kernel", dict(BM=64, BN=32, BK=16), shape, "bf16")
    # x: 9 taps × 2 out-channel blocks × 2·32·256 elements × 2 B; weights once per (sample, pixel block): 2·4 ×
    # 48·32·9·2 B; attention per program: 2 samples · 4 pixel blocks · 2 out blocks · 9·32 values · 4 B
    assert fwd["loaded_bytes"] == {"x": 589824, "weight": 221184, "attention": 18432}
    assert fwd["activation_reads_per_block"] == 9 and fwd["blocks_of_the_other_side"] == 2
    written = 2 * 48 * 256 * 2
    assert fwd["loaded_per_written"] == round((589824 + 221184 + 18432) / written, 3)
    assert fwd["compulsory_per_written"] == round((2 * 32 * 256 * 2 + 48 * 32 * 9 * 2 + 2 * 32 * 9 * 4) / written, 3)
    dx = conv_traffic("_conv_dx_kernel", dict(BM=64, BN=32, BK=16), shape, "fp32")
    assert dx["loaded_bytes"]["dy"] == 9 * 1 * 2 * 48 * 256 * 4  # one in-channel block of 32
    dwa = conv_traffic("_conv_dwa_kernel", dict(BM=16, BN=16, BK=16), dict(shape, k=5), "fp16")
    assert dwa["activation_reads_per_block"] == 25 and dwa["blocks_of_the_other_side"] == 3
    assert dwa["loaded_bytes"]["x"] == 25 * 3 * 2 * 32 * 256 * 2 and dwa["loaded_bytes"]["dy"] == 25 * 2 * 2 * 48 * 256 * 2
    tma = conv_traffic("_conv_fwd_tma_kernel", dict(BH=8, BW=8, BN=32, BK=32), shape, "bf16")
    # boxes of 32 (padded) channels: 9 taps × 2 out blocks × 2·256 pixels · 32 · 2 B; the copy reads x once
    assert tma["loaded_bytes"]["x"] == 9 * 2 * 2 * 256 * 32 * 2 and tma["loaded_bytes"]["layout_copy"] == 2 * 32 * 256 * 2
    assert tma["staging_written_bytes"] == 2 * 256 * 32 * 2 + 9 * 32 * 48 * 2
    dx_tma = conv_traffic("_conv_dx_tma_kernel", dict(BH=8, BW=8, BN=32, BK=32), shape, "bf16")
    # dy's 48 channels pad to 64; 32 input channels make one block; the copy reads dy once
    assert dx_tma["loaded_bytes"]["dy"] == 9 * 1 * 2 * 256 * 64 * 2 and dx_tma["loaded_bytes"]["layout_copy"] == 2 * 48 * 256 * 2
    dwa_tma = conv_traffic("_conv_dwa_tma_kernel", dict(BH=4, BW=8, BN=32, BK=32), shape, "bf16")
    # 1 in-channel block of 32, 2 out-channel blocks of 32 (48 → 64 padded)
    assert dwa_tma["loaded_bytes"]["x"] == 9 * 2 * 2 * 256 * 32 * 2 and dwa_tma["loaded_bytes"]["dy"] == 9 * 1 * 2 * 256 * 64 * 2
    assert dwa_tma["staging_written_bytes"] == 2 * 256 * (32 + 64) * 2
    assert conv_traffic("_chain_kernel", dict(BM=16, BN=16, BK=16), shape, "fp32") is None


def test_the_gate_fails_on_errors_spills_and_shared_memory():
    from interir.check.static import Compiled, gate_failures, totals

    rows = [Compiled("a", "x", True, "sm_90", 4, 2, ok=True, spill_bytes=0, shared_bytes=1000, shared_limit=232448),
            Compiled("b", "x", True, "sm_90", 4, 2, ok=False, error="LLVM ERROR: boom"),
            Compiled("c", "x", True, "sm_90", 4, 2, ok=True, spill_bytes=16, shared_bytes=10, shared_limit=232448),
            Compiled("d", "x", False, "sm_90", 4, 2, ok=True, spill_bytes=16, shared_bytes=10, shared_limit=232448),
            Compiled("e", "x", True, "sm_120", 4, 2, ok=True, spill_bytes=0, shared_bytes=200000, shared_limit=101376)]
    failures = gate_failures(rows)
    assert len(failures) == 3  # b's error, c's spill (a default config), e's shared memory; d is a candidate
    assert any("does not compile" in f for f in failures) and any("spills 16 bytes" in f for f in failures)
    assert any("shared memory" in f for f in failures)
    assert totals(rows)["sm_90"] == {"launches": 4, "compiled": 3, "failed": 1, "spilling": 2, "spilling_default": 1}


# Two entries as nvcc -Xptxas=-v prints them (names from a real build of csrc/): one clean, one whose block
# reduction keeps its accumulators on the stack and spills.
PTXAS_LOG = """\
ptxas info    : Compiling entry function '_ZN7interir19block_reduce_kernelILi1EZNS_4impl11fft_l1_lossERKN2at6TensorES5_EUlliPfE_ZNS1_11fft_l1_lossES5_S5_EUllPKfE_EEvT0_T1_' for 'sm_90'
ptxas info    : Function properties for _ZN7interir19block_reduce_kernelILi1EZNS_4impl11fft_l1_lossERKN2at6TensorES5_EUlliPfE_ZNS1_11fft_l1_lossES5_S5_EUllPKfE_EEvT0_T1_
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 31 registers, used 1 barriers, 1028 bytes smem
ptxas info    : Compiling entry function '_ZN7interir19block_reduce_kernelILi49EZNS_4impl19attention_forward_tIfLi7EEEvRKN2at6TensorEPKffPfEUlliS9_E_ZS2_IfLi7EEvS8_SA_fS9_EUllSA_E_EEvT0_T1_' for 'sm_90'
ptxas info    : Function properties for _ZN7interir19block_reduce_kernelILi49EZNS_4impl19attention_forward_tIfLi7EEEvRKN2at6TensorEPKffPfEUlliS9_E_ZS2_IfLi7EEvS8_SA_fS9_EUllSA_E_EEvT0_T1_
    200 bytes stack frame, 4 bytes spill stores, 24 bytes spill loads
ptxas info    : Used 80 registers, used 1 barriers, 8 bytes cumulative stack size, 1220 bytes smem
"""


def test_cuda_report_reads_ptxas_figures_and_gates_stack_and_spills(tmp_path, capsys):
    from interir.check import cuda_report

    kernels = cuda_report.parse_ptxas_log(PTXAS_LOG)
    assert [(k.target, k.registers, k.stack_bytes, k.spill_bytes) for k in kernels] == [
        ("sm_90", 31, 0, 0), ("sm_90", 80, 200, 28)]
    assert kernels[1].kernel.startswith("block_reduce_kernel<49>")
    failures = cuda_report.gate_failures(kernels)
    assert len(failures) == 2 and all("<49>" in f for f in failures)
    assert cuda_report.gate_failures(kernels[:1]) == []
    log = tmp_path / "build.log"
    log.write_text(PTXAS_LOG)
    assert cuda_report.main([str(log)]) == 1
    assert "2 CUDA kernels: FAILED" in capsys.readouterr().out
    log.write_text("no figures here\n")
    assert cuda_report.main([str(log)]) == 1
    assert "INTERIR_PTXAS_VERBOSE=1" in capsys.readouterr().err


# Two tensor-core kernels of a real build of csrc/ (the bfloat16 forward as an implicit GEMM and with halo tiles),
# and SASS as cuobjdump prints it, in which only the first holds HMMA.
GEMM_FWD = ("_ZN7interir16warp_task_kernelINS_8GemmTaskIN3c108BFloat16EZNS_4impl16conv_forward_mmaIS3_EEvPKT_S8_PKfSA_"
            "PS6_RKNS_9ConvShapeEEUliiiE_ZS5_IS3_EvS8_S8_SA_SA_SB_SE_EUliiiE0_ZS5_IS3_EvS8_S8_SA_SA_SB_SE_EUliiifE_EEEEv"
            "S6_")
HALO_FWD = "_ZN7interir16warp_task_kernelINS_12ConvHaloTaskIN3c108BFloat16ELi1EEEEEvT_"
GEMM_LOG = "".join(f"ptxas info    : Compiling entry function '{name}' for 'sm_90'\n"
                   f"    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
                   f"ptxas info    : Used 70 registers, used 1 barriers\n" for name in (GEMM_FWD, HALO_FWD))
GEMM_SASS = f"""
\tcode for sm_90
\t\tFunction : {GEMM_FWD}
\t.headerflags\t@"EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0a80*/                   HMMA.16816.F32.BF16 R8, R12, R16, R8 ;
        /*0a90*/                   LDG.E.U16 R3, desc[UR4][R4.64] ;
\t\tFunction : {HALO_FWD}
        /*0a80*/                   FFMA R8, R12, R16, R8 ;
"""


def test_cuda_report_gates_tensor_core_kernels_without_tensor_core_instructions():
    from interir.check import cuda_report

    kernels = cuda_report.parse_ptxas_log(GEMM_LOG)
    classes = cuda_report.tensor_core_classes(GEMM_SASS)
    assert classes == {kernels[0].kernel: "HMMA", kernels[1].kernel: "none"}
    assert [k.kernel for k in kernels] == ["warp_task_kernel of conv_forward_mma<c10::BFloat16>",
                                           "warp_task_kernel of ConvHaloTask<c10::BFloat16, 1>"]
    assert cuda_report.gate_failures(kernels) == []  # without --sass nothing is known: no verdict
    for k in kernels:
        k.tensor_cores = classes[k.kernel]
    failures = cuda_report.gate_failures(kernels)
    assert failures == ["warp_task_kernel of ConvHaloTask<c10::BFloat16, 1> on sm_90: no tensor-core instruction "
                        "in its SASS"]
    assert "| HMMA |" in cuda_report.format_table(kernels)


def test_the_exact_reference_differentiates_the_weights_the_backend_got():
    """The float64 reference's backward gets the same (bfloat16-rounded) output weights as a bfloat16 backend:
    through identity factors the gradient of x is those weights, bit for bit, in both runs."""
    from interir.ops.verify import run_op

    x = torch.randn(1, 2, 5, 4).bfloat16()
    p1 = torch.eye(5).expand(1, 2, 5, 5).contiguous().bfloat16()
    p2 = torch.eye(4).expand(1, 2, 4, 4).contiguous().bfloat16()
    got = run_op("kron_apply", "reference", (x, p1, p2, False))
    exact = run_op("kron_apply", "reference", (x, p1, p2, False), dtype_of=lambda t: torch.float64)
    assert exact[1].dtype == torch.float64
    assert torch.equal(got[1].double(), exact[1])


def test_a_scalar_summed_in_16_bit_gets_the_random_walk_floor():
    """dη of kron_step from bfloat16 maps: a floor at the scale of its summed rounding (Σ|terms|/√terms), far
    below |dη| so a wrong sign still fails; float32 arguments keep the plain rule."""
    from interir.check.cases import CASES
    from interir.ops.verify import _scalar_floors, run_op

    case = next(c for c in CASES if c.op == "kron_step" and c.quick)
    for dtype, expect_floor in ((torch.float32, False), (torch.bfloat16, True)):
        torch.manual_seed(0)
        args = case.make(torch.device("cpu"), dtype, True)
        got = run_op("kron_step", "reference", args, front=case.front)
        floors = _scalar_floors("kron_step", args, got, case.front)
        assert (6 in floors) == expect_floor and set(floors) <= {6}
    exact = run_op("kron_step", "reference", args, front=case.front, dtype_of=lambda t: torch.float64)
    assert 0 < floors[6] < 0.25 * abs(exact[6].item())  # here 1.0 against |dη| = 5.6


def test_cuda_traffic_model_counts_the_halo_reuse():
    """The CUDA convolutions' traffic model: per tap for the FFMA and GEMM forms, once per haloed patch for the
    halo tiles (10×18 loads for 8×16 pixels), with the blocks each form's tile sides give."""
    from interir.check.traffic import CUDA_KERNELS, cuda_conv_traffic

    shape = {"b": 2, "cin": 96, "cout": 96, "h": 64, "w": 64, "k": 3, "groups": 1}
    rows = {(path, kind): cuda_conv_traffic(path, kind, shape, "bf16") for path, kind in CUDA_KERNELS}
    assert [rows[p, "fwd"]["activation_reads_per_block"] for p in ("ffma", "gemm", "halo")] == [9, 9, 1.406]
    assert [rows[p, "fwd"]["blocks_of_the_other_side"] for p in ("ffma", "gemm", "halo")] == [12, 3, 6]
    activation = {p: rows[p, "fwd"]["loaded_bytes"]["x"] for p in ("ffma", "gemm", "halo")}
    assert activation["halo"] == 2 * 96 * 64 * 64 * 2 * 6 * 180 / 128  # every x element, 6 blocks × 180/128
    assert activation["gemm"] / activation["halo"] > 3 and activation["ffma"] / activation["halo"] > 12
    assert rows["halo", "dx"]["loaded_bytes"]["dy"] == activation["halo"]
    assert rows["halo", "dk"]["activation_reads_per_block"] == 1.406 and rows["halo", "dk"]["loaded_bytes"]["dy"] == \
        2 * 96 * 64 * 64 * 2 * 6  # dy once per 16-input-channel block
    odd = cuda_conv_traffic("halo", "fwd", dict(shape, h=9, w=17), "fp32")
    assert odd["activation_reads_per_block"] == round(4 * 180 / (9 * 17), 3)  # partial patches load whole halos
    with pytest.raises(ValueError, match="3×3"):
        cuda_conv_traffic("halo", "fwd", dict(shape, k=5), "bf16")
