"""The machine facts saved beside every benchmark: the vector ISA decides what bf16 and fp32 cost here."""

from engine.measure.machine import cpu_facts, machine_facts

AMX = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n"
AVX2 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx avx2 fma\n"


def test_isa_is_the_best_extension_the_cpu_has():
    assert cpu_facts(AMX) == {"cpu_model": "Intel(R) Xeon(R) Processor", "isa": "AMX",
                              "isa_flags": ["avx2", "avx512f", "amx_bf16", "amx_tile"]}
    assert cpu_facts(AVX2)["isa"] == "AVX2" and cpu_facts(AVX2)["cpu_model"] == "AMD EPYC 7B13"
    assert cpu_facts("flags\t: fpu sse\n")["isa"] == "other"


def test_this_machine_reports_threads_load_and_versions():
    facts = machine_facts()
    assert facts["cpus"] >= 1 and facts["load_avg_1m"] >= 0
    assert facts["isa"] in ("AMX", "AVX-512", "AVX2", "other")
    assert "torch" in facts["versions"] and "ray" in facts["versions"]
