"""Write the malformed-input corpus: one file per bad input and ``cases.json`` saying how each is used.

Run from the repository root to regenerate (the files are committed):

    python tests/data/corpus/make_corpus.py

Each case is a metasel command line with placeholders — ``{FILE}`` the case's file,
``{STORE}`` a populated store (tests/cli/test_corpus.py checks its bytes do not change),
``{TMP}`` a scratch folder, ``{DATA}`` a small valid generic CSV — and the exit code it
must end with: 1 for bad input, 2 for a usage mistake. Every case must print exactly one
line on stderr, starting ``metasel: error:``, and no traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"

SPEC = "model: {preset: llama-5m}\nworkload: {prompt_len: 16, output_len: 4}\n"
MODEL = "{arch: llama, layers: 2, hidden: 64, heads: 4, kv_heads: 2, intermediate: 128, vocab: 100}"
GRID_BASE = "base: {model: {preset: llama-5m}, workload: {prompt_len: 16, output_len: 4}}\n"


def spec_with(**top: str) -> str:
    parts = {"model": "{preset: llama-5m}", "workload": "{prompt_len: 16, output_len: 4}", **top}
    return "".join(f"{k}: {v}\n" for k, v in parts.items() if v is not None)


def workload(extra: str) -> str:
    return spec_with(workload="{prompt_len: 16, output_len: 4, " + extra + "}")


def model(extra: str) -> str:
    return spec_with(model="{arch: llama, layers: 2, hidden: 64, heads: 4, kv_heads: 2, intermediate: 128, vocab: 100, "
                     + extra + "}")


def yaml_cases() -> dict[str, bytes | str]:
    # anchors inside an allowed field (a list where a string belongs): the error formats the value
    levels = ["&a [" + ", ".join(["xxxxxxxx"] * 9) + "]"] + [f"&{c} [" + ", ".join([f"*{p}"] * 9) + "]"
                                                            for p, c in zip("abcdefgh", "bcdefghi")]
    bomb = "model: {preset: llama-5m}\nworkload: {prompt_len: 16, output_len: 4, domain: [" + ", ".join(levels) + "]}\n"
    return {
        # files that are not YAML specs at all
        "empty.yaml": b"", "blank.yaml": b"   \n\n", "binary.yaml": bytes(range(256)) * 4,
        "latin1.yaml": "model: {name: caf\xe9}\n".encode("latin-1"), "utf16.yaml": SPEC.encode("utf-16"),
        "badyaml.yaml": "model: {preset: llama-5m\nworkload: [", "tab-indent.yaml": "model:\n\tpreset: llama-5m\n",
        "list.yaml": "- 1\n- 2\n", "scalar.yaml": "42\n", "string.yaml": "hello\n", "null.yaml": "~\n",
        "python-tag.yaml": "model: !!python/object/apply:os.system ['true']\nworkload: {prompt_len: 16, output_len: 4}\n",
        "unknown-tag.yaml": "model: !custom {preset: llama-5m}\nworkload: {prompt_len: 16, output_len: 4}\n",
        # bombs and limits
        "alias-bomb.yaml": bomb, "deep-nesting.yaml": "model: " + "[" * 600 + "]" * 600 + "\n",
        "deep-mapping.yaml": "model: " + "{a: " * 200 + "1" + "}" * 200 + "\n",
        "long-string.yaml": spec_with(name="x" * 20_000), "huge-file.yaml": SPEC + ("#" + "x" * 99 + "\n") * 3_000,
        "dup-model.yaml": SPEC + "model: {preset: gpt2-5m}\n",
        "dup-nested.yaml": "model: {preset: llama-5m, preset: gpt2-5m}\nworkload: {prompt_len: 16, output_len: 4}\n",
        # structure
        "nomodel.yaml": "workload: {prompt_len: 16, output_len: 4}\n", "noworkload.yaml": "model: {preset: llama-5m}\n",
        "unknownkey.yaml": SPEC + "colour: red\n", "model-list.yaml": spec_with(model="[llama]"),
        "model-string.yaml": spec_with(model="llama"), "workload-list.yaml": spec_with(workload="[16, 4]"),
        "unknownmodelkey.yaml": spec_with(model="{preset: llama-5m, wings: 2}"),
        "int-key.yaml": spec_with(model="{1: llama}"),
        "badpreset.yaml": spec_with(model="{preset: llama-1t}"), "preset-number.yaml": spec_with(model="{preset: 5}"),
        "badarch.yaml": spec_with(model="{arch: transformer9, layers: 2, hidden: 64, heads: 4, kv_heads: 2, "
                                        "intermediate: 128, vocab: 100}"),
        "missing-dim.yaml": spec_with(model="{arch: llama, layers: 2, hidden: 64, heads: 4, kv_heads: 2, vocab: 100}"),
        "floatlayers.yaml": model("layers: 2.5").replace("layers: 2, ", "", 1),
        "heads-not-divisor.yaml": model("").replace("heads: 4, kv_heads: 2", "heads: 5, kv_heads: 5").replace(", }", "}"),
        "kv-not-divisor.yaml": model("").replace("kv_heads: 2", "kv_heads: 3").replace(", }", "}"),
        "zero-layers.yaml": model("").replace("layers: 2", "layers: 0").replace(", }", "}"),
        "huge-hidden.yaml": spec_with(model="{preset: llama-5m, hidden: 100000000000}"),
        "huge-layers.yaml": spec_with(model="{preset: llama-5m, layers: 1000000}"),
        "huge-vocab.yaml": spec_with(model="{preset: llama-5m, vocab: 10000000000}"),
        "huge-model.yaml": spec_with(model="{arch: llama, layers: 1024, hidden: 131072, heads: 1024, kv_heads: 1024, "
                                           "intermediate: 1048576, vocab: 4000000}"),
        "experts-over.yaml": spec_with(model="{preset: llama-5m, experts: 2, experts_per_token: 4}"),
        "bad-dtype.yaml": spec_with(model="{preset: llama-5m, dtype: float8}"),
        "name-number.yaml": spec_with(model="{preset: llama-5m, name: [1]}"),
        # workload values
        "strlen.yaml": spec_with(workload="{prompt_len: 16, output_len: many}"),
        "neglen.yaml": spec_with(workload="{prompt_len: -16, output_len: 4}"),
        "zero-output.yaml": spec_with(workload="{prompt_len: 16, output_len: 0}"),
        "huge-output.yaml": spec_with(workload="{prompt_len: 16, output_len: 1000000000000000000000000000000}"),
        "huge-prompt.yaml": spec_with(workload="{prompt_len: 100000000, output_len: 4}"),
        "float-output.yaml": spec_with(workload="{prompt_len: 16, output_len: 4.5}"),
        "inf-output.yaml": spec_with(workload="{prompt_len: 16, output_len: .inf}"),
        "zerobatch.yaml": workload("batch_size: 0"), "huge-batch.yaml": workload("batch_size: 100000000"),
        "boolbatch.yaml": workload("batch_size: true"), "string-batch.yaml": workload("batch_size: four"),
        "batch-and-concurrency.yaml": workload("batch_size: 2, concurrency: 2"),
        "huge-requests.yaml": workload("num_requests: 1000000000"), "zero-requests.yaml": workload("num_requests: 0"),
        "nanprefix.yaml": workload("shared_prefix: .nan"), "prefix-over-1.yaml": workload("shared_prefix: 1.5"),
        "neg-prefix.yaml": workload("shared_prefix: -0.5"), "domain-number.yaml": workload("domain: [1, 2]"),
        "unknown-workload-key.yaml": workload("speed: fast"),
        "baddist.yaml": spec_with(workload="{prompt_len: {dist: zipf, a: 2}, output_len: 4}"),
        "dist-missing-max.yaml": spec_with(workload="{prompt_len: {dist: uniform, min: 4}, output_len: 4}"),
        "dist-max-below-min.yaml": spec_with(workload="{prompt_len: {dist: uniform, min: 40, max: 4}, output_len: 4}"),
        "dist-huge-max.yaml": spec_with(workload="{prompt_len: {dist: uniform, min: 4, max: 100000000}, output_len: 4}"),
        "dist-neg-std.yaml": spec_with(workload="{prompt_len: {dist: normal, mean: 10, std: -1, min: 1, max: 20}, "
                                                "output_len: 4}"),
        "dist-empty-choices.yaml": spec_with(workload="{prompt_len: {dist: choice, choices: []}, output_len: 4}"),
        "dist-unknown-key.yaml": spec_with(workload="{prompt_len: {dist: fixed, value: 4, extra: 1}, output_len: 4}"),
        "arrival-unknown.yaml": workload("arrival: {process: zipf}"),
        "arrival-neg-rate.yaml": workload("arrival: {process: poisson, rate: -2}"),
        "arrival-no-clients.yaml": workload("arrival: {process: concurrency}"),
        "arrival-huge-clients.yaml": workload("arrival: {process: concurrency, clients: 1000000000}"),
        "slo-unknown.yaml": workload("slo: {speed_ms: 3}"), "slo-negative.yaml": workload("slo: {ttft_ms: -3}"),
        # hardware, objective, budget
        "badmetric.yaml": spec_with(objective="{metric: vibes}"),
        "bad-direction.yaml": spec_with(objective="{metric: value, direction: up}"),
        "neg-memory.yaml": spec_with(objective="{constraints: {max_memory_mb: -5}}"),
        "negprice.yaml": spec_with(hardware="{name: box, price_per_hour: -1}"),
        "hardware-string.yaml": spec_with(hardware="fast"),
        "bad-device.yaml": spec_with(hardware="{device: tpu}"),
        "huge-threads.yaml": spec_with(hardware="{threads: 10000000}"),
        "zero-threads.yaml": spec_with(hardware="{threads: 0}"),
        "budget-zero.yaml": spec_with(budget="{benchmarks: 0}"),
        "budget-huge.yaml": spec_with(budget="{benchmarks: 100000000}"),
        "budget-unknown.yaml": spec_with(budget="{money: 5}"),
    }


def grid_cases() -> dict[str, str]:
    axes5 = "".join(f"  {k}: [{', '.join(str(i + 1) for i in range(10))}]\n"
                    for k in ("workload.batch_size", "workload.output_len", "workload.prompt_len", "model.layers"))
    return {
        "grid-axis-scalar.yaml": GRID_BASE + "axes: {workload.batch_size: 4}\n",
        "grid-axis-empty.yaml": GRID_BASE + "axes: {workload.batch_size: []}\n",
        "grid-axis-unknown-root.yaml": GRID_BASE + "axes: {colour.hue: [1, 2]}\n",
        "grid-badtask.yaml": GRID_BASE + "axes: {workload.batch_size: [1, -1]}\n",
        "grid-excludeall.yaml": GRID_BASE + "axes: {workload.batch_size: [1]}\nexclude: [{workload.batch_size: 1}]\n",
        "grid-exclude-not-list.yaml": GRID_BASE + "axes: {workload.batch_size: [1]}\nexclude: {workload.batch_size: 1}\n",
        "grid-exclude-empty-rule.yaml": GRID_BASE + "axes: {workload.batch_size: [1, 2]}\nexclude: [{}]\n",
        "grid-too-many-tasks.yaml": GRID_BASE + "axes:\n" + axes5 + "  workload.shared_prefix: [0, 0.1, 0.2]\n",
        "grid-unknown-method.yaml": GRID_BASE + "axes: {workload.batch_size: [1, 2]}\nmethods: [sdpa, warp_drive]\n",
        "grid-methods-empty.yaml": GRID_BASE + "axes: {workload.batch_size: [1, 2]}\nmethods: []\n",
        "grid-methods-string.yaml": GRID_BASE + "axes: {workload.batch_size: [1, 2]}\nmethods: sdpa\n",
        "grid-method-pattern-none.yaml": GRID_BASE + "axes: {workload.batch_size: [1]}\nmethods: ['tensorrt/*']\n",
        "grid-repeats-zero.yaml": GRID_BASE + "axes: {workload.batch_size: [1, 2]}\nrepeats: 0\n",
        "grid-timeout-neg.yaml": GRID_BASE + "axes: {workload.batch_size: [1, 2]}\ntimeout_s: -5\n",
        "grid-unknown-key.yaml": GRID_BASE + "axes: {workload.batch_size: [1, 2]}\nshuffle: true\n",
        "grid-base-list.yaml": "base: [1, 2]\naxes: {workload.batch_size: [1, 2]}\n",
        "grid-huge-value.yaml": GRID_BASE + "axes: {workload.batch_size: [1, 100000000]}\n",
        "grid-long-value-error.yaml": GRID_BASE + "axes:\n  workload.domain: [ok, " + "[" + ", ".join(["x" * 50] * 200) + "]]\n",
        "grid-dup-axis.yaml": GRID_BASE + "axes:\n  workload.batch_size: [1]\n  workload.batch_size: [2]\n",
        "grid-alias-bomb.yaml": "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                                "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                                "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n" + GRID_BASE
                                + "axes: {workload.domain: *e}\n",
    }


def csv_cases() -> dict[str, bytes | str]:
    return {
        "empty.csv": b"", "binary.csv": b"\x00\x01\x02task,method,value\n", "utf16.csv": "task,method,value\ni1,a,1\n".encode("utf-16"),
        "latin1.csv": "task,method,value\ncaf\xe9,a,1\n".encode("latin-1"),
        "headeronly.csv": "task,method,value\n", "missingcol.csv": "task,method\ni1,a\n", "nan.csv": "task,method,value\ni1,a,NaN\n",
        "inf.csv": "task,method,value\ni1,a,inf\n", "negative.csv": "task,method,value\ni1,a,-2\n",
        "text.csv": "task,method,value\ni1,a,fast\n", "emptytask.csv": "task,method,value\n,a,1\n",
        "emptymethod.csv": "task,method,value\ni1,,1\n", "badstatus.csv": "task,method,value,status\ni1,a,,ok\n",
        "extracol.csv": "task,method,value,colour\ni1,a,1,red\n", "ragged.csv": "task,method,value\ni1,a,1,2,3\n",
        "short-row.csv": "task,method,value\ni1,a\n", "unknownheader.csv": "alpha,beta\n1,2\n",
        "dupheader.csv": "task,method,value,value\ni1,a,1,2\n", "empty-header-name.csv": "task,,value\ni1,a,1\n",
        "dup-rows.csv": "task,method,value\ni1,a,1\ni2,a,2\ni1,a,3\n",
        "dup-rows-hardware.csv": "task,method,value,hardware\ni1,a,1,h\ni1,a,2,h\n",
        "long-task.csv": "task,method,value\n" + "t" * 5000 + ",a,1\n",
        "huge-field.csv": "task,method,value\ni1," + "m" * 200_000 + ",1\n",
        "unclosed-quote.csv": 'task,method,value\n"i1,a,1\n',
        "value-with-unit.csv": "task,method,value\ni1,a,3 s\n", "hex-value.csv": "task,method,value\ni1,a,0x10\n",
        "comma-decimal.csv": 'task,method,value\ni1,a,"1,5"\n',
        "llmbench.csv": "model,hardware,framework,batch_size_semantics\nx,y,z,w\n",
        "llmbench-no-rows.csv": "model,hardware,framework,batch_size_semantics\n",
    }


def features_cases() -> dict[str, str]:
    return {
        "features-text.csv": "task,x\ni1,abc\n", "features-no-task.csv": "id,x\ni1,1\n",
        "features-dup-task.csv": "task,x\ni1,1\ni1,2\n", "features-headeronly.csv": "task,x\n",
        "features-ragged.csv": "task,x\ni1,1,2\n", "features-empty.csv": "",
    }


def folds_cases() -> dict[str, str]:
    return {
        "folds-two-folds.csv": "task,fold\ni0,1\ni1,2\ni2,1\ni0,2\n",
        "folds-non-integer.csv": "task,fold\ni0,one\ni1,2\ni2,1\n",
        "folds-missing-task.csv": "task,fold\ni0,1\ni1,2\n",
        "folds-unknown-task.csv": "task,fold\ni0,1\ni1,2\ni2,1\nnosuch,2\n",
        "folds-no-fold-col.csv": "task,split\ni0,1\n", "folds-headeronly.csv": "task,fold\n",
        "folds-empty-task.csv": "task,fold\ni0,1\ni1,2\ni2,1\n,2\n",
        "folds-float-rep.csv": "task,fold,repetition\ni0,1,1.5\ni1,2,1\ni2,1,1\n",
        "folds-binary.csv": b"\x00\x01task,fold\n",
    }


def export_cases() -> dict[str, dict[str, bytes | str]]:
    """Folders posing as metasel exports."""
    return {
        "export-no-manifest": {"observations.csv": "obs_id\n"},
        "export-bad-json": {"manifest.json": "{not json"},
        "export-wrong-format": {"manifest.json": '{"format": "other"}'},
        "export-newer": {"manifest.json": '{"format": "metasel-export", "schema_version": 99}'},
        "export-missing-table": {"manifest.json": '{"format": "metasel-export", "schema_version": 3, "file_format": "csv"}'},
        "export-bad-observations": {
            "manifest.json": '{"format": "metasel-export", "schema_version": 3, "file_format": "csv"}',
            "observations.csv": "task_id,method,hardware_id,throughput_tok_s\nt,m,h,fast\n",
            "tasks.csv": "task_id,name,spec,features\n", "methods.csv": "method,techniques,description\n",
            "hardware.csv": "hardware_id,name,specs,price_per_hour\n"},
        "export-unknown-column": {
            "manifest.json": '{"format": "metasel-export", "schema_version": 3, "file_format": "csv"}',
            "observations.csv": "task_id,method,hardware_id,colour\nt,m,h,red\n",
            "tasks.csv": "task_id,name,spec,features\n", "methods.csv": "method,techniques,description\n",
            "hardware.csv": "hardware_id,name,specs,price_per_hour\n"},
        "export-bad-status": {
            "manifest.json": '{"format": "metasel-export", "schema_version": 3, "file_format": "csv"}',
            "observations.csv": "task_id,method,hardware_id,throughput_tok_s,status\nt,m,h,1,meh\n",
            "tasks.csv": "task_id,name,spec,features\n", "methods.csv": "method,techniques,description\n",
            "hardware.csv": "hardware_id,name,specs,price_per_hour\n"},
        "export-bad-spec-json": {
            "manifest.json": '{"format": "metasel-export", "schema_version": 3, "file_format": "csv"}',
            "observations.csv": "task_id,method,hardware_id,throughput_tok_s\nt,m,h,1\n",
            "tasks.csv": "task_id,name,spec,features\nt,t,{nope,{}\n", "methods.csv": "method,techniques,description\n",
            "hardware.csv": "hardware_id,name,specs,price_per_hour\n"},
    }


# command-line mistakes: (id, args, exit code); no file of their own
ARG_CASES = [
    ("evaluate-protocol-bad-k", ["evaluate", "--data", "{DATA}", "--protocol", "group:foo:x", "--out", "{TMP}/ev"], 1),
    ("evaluate-protocol-no-groups", ["evaluate", "--data", "{DATA}", "--protocol", "group:foo", "--out", "{TMP}/ev"], 1),
    ("evaluate-protocol-k1", ["evaluate", "--data", "{DATA}", "--protocol", "group:model.arch:1", "--out", "{TMP}/ev"], 1),
    ("evaluate-protocol-k0", ["evaluate", "--data", "{DATA}", "--protocol", "group:model.arch:0", "--out", "{TMP}/ev"], 1),
    ("evaluate-protocol-unknown", ["evaluate", "--data", "{DATA}", "--protocol", "random", "--out", "{TMP}/ev"], 1),
    ("evaluate-folds-without-file", ["evaluate", "--data", "{DATA}", "--protocol", "folds", "--out", "{TMP}/ev"], 1),
    ("evaluate-metric-unknown", ["evaluate", "--data", "{DATA}", "--metric", "nosuch", "--out", "{TMP}/ev"], 1),
    ("evaluate-metric-absent", ["evaluate", "--data", "{DATA}", "--metric", "ttft_ms", "--out", "{TMP}/ev"], 1),
    ("evaluate-data-missing", ["evaluate", "--data", "{TMP}/nosuch.csv", "--out", "{TMP}/ev"], 1),
    ("evaluate-out-unwritable", ["evaluate", "--data", "{DATA}", "--out", "/proc/metasel/ev"], 1),
    ("evaluate-out-is-file", ["evaluate", "--data", "{DATA}", "--out", "{DATA}"], 2),
    ("evaluate-baseline-unknown", ["evaluate", "--data", "{DATA}", "--baselines", "oracle9", "--out", "{TMP}/ev"], 1),
    ("evaluate-choose-bad", ["evaluate", "--data", "{DATA}", "--choose", "quantile:7", "--out", "{TMP}/ev"], 1),
    ("evaluate-steps-1", ["evaluate", "--data", "{DATA}", "--steps", "1", "--out", "{TMP}/ev"], 2),
    ("evaluate-no-out", ["evaluate", "--data", "{DATA}"], 2),
    ("fit-steps-1", ["--store", "{STORE}", "fit", "--steps", "1", "--out", "{TMP}/m.metasel"], 2),
    ("fit-out-unwritable", ["--store", "{STORE}", "fit", "--out", "/proc/metasel/m.metasel"], 1),
    ("fit-out-missing-folder", ["--store", "{STORE}", "fit", "--out", "{TMP}/no/such/m.metasel"], 1),
    ("fit-out-is-folder", ["--store", "{STORE}", "fit", "--out", "{TMP}"], 2),
    ("fit-calibrate-by-unknown", ["--store", "{STORE}", "fit", "--calibrate-by", "nosuch", "--steps", "10", "--out",
                                  "{TMP}/m.metasel"], 1),
    ("fit-metric-unknown", ["--store", "{STORE}", "fit", "--metric", "vibes", "--out", "{TMP}/m.metasel"], 1),
    ("fit-hardware-unknown", ["--store", "{STORE}", "fit", "--hardware", "bogus", "--out", "{TMP}/m.metasel"], 1),
    ("show-hardware-unknown", ["--store", "{STORE}", "show", "--hardware", "bogus"], 1),
    ("show-metric-unknown", ["--store", "{STORE}", "show", "--metric", "vibes"], 1),
    ("show-top-negative", ["--store", "{STORE}", "show", "--top", "-1"], 2),
    ("show-missing-store", ["--store", "{TMP}/nosuch.sqlite", "show"], 1),
    ("show-store-is-folder", ["--store", "{TMP}", "show"], 2),
    ("export-into-file", ["--store", "{STORE}", "export", "{DATA}"], 2),
    ("export-unwritable", ["--store", "{STORE}", "export", "/proc/metasel/out"], 1),
    ("export-hardware-unknown", ["--store", "{STORE}", "export", "{TMP}/out", "--hardware", "bogus"], 1),
    ("import-missing-file", ["--store", "{STORE}", "import", "{TMP}/nosuch.csv"], 1),
    ("import-into-missing-folder", ["--store", "{TMP}/nosuch/s.sqlite", "import", "{DATA}"], 1),
    ("import-format-unknown", ["--store", "{STORE}", "import", "{DATA}", "--format", "xlsx"], 2),
    ("import-objective-bad", ["--store", "{STORE}", "import", "{DATA}", "--objective", "up"], 2),
    ("import-direction-conflict", ["--store", "{STORE}", "import", "{DATA}", "--objective", "max"], 1),
    ("retract-nothing", ["--store", "{STORE}", "retract", "--reason", "x"], 1),
    ("retract-unknown-id", ["--store", "{STORE}", "retract", "o-nosuch", "--reason", "x"], 1),
    ("retract-no-reason", ["--store", "{STORE}", "retract", "o-nosuch"], 2),
    ("retract-empty-reason", ["--store", "{STORE}", "retract", "--noisy", "--reason", " "], 1),
    ("suggest-missing-task", ["--store", "{STORE}", "suggest", "--task", "{TMP}/nosuch.yaml"], 1),
    ("suggest-plot-unwritable", ["--store", "{STORE}", "suggest", "--task", "{SPEC}", "--plot", "/proc/metasel/x.png"], 1),
    ("suggest-model-missing", ["--store", "{STORE}", "suggest", "--task", "{SPEC}", "--model", "{TMP}/nosuch.metasel"], 1),
    ("suggest-model-not-a-model", ["--store", "{STORE}", "suggest", "--task", "{SPEC}", "--model", "{DATA}"], 1),
    ("suggest-risk-out-of-range", ["--store", "{STORE}", "suggest", "--task", "{SPEC}", "--risk", "1.5"], 2),
    ("suggest-choose-bad", ["--store", "{STORE}", "suggest", "--task", "{SPEC}", "--choose", "best"], 1),
    ("suggest-unknown-option", ["--store", "{STORE}", "suggest", "--task", "{SPEC}", "--bogus"], 2),
    ("suggest-hardware-file-missing", ["--store", "{STORE}", "suggest", "--task", "{SPEC}", "--hardware",
                                       "{TMP}/nosuch.yaml"], 1),
    ("collect-unknown-method", ["--store", "{STORE}", "collect", "--grid", "{SPEC}", "--methods", "warp_drive"], 1),
    ("collect-bad-threads", ["--store", "{STORE}", "collect", "--grid", "{SPEC}", "--threads", "two"], 2),
    ("collect-zero-repeats", ["--store", "{STORE}", "collect", "--grid", "{SPEC}", "--repeats", "0"], 2),
    ("collect-missing-grid", ["--store", "{STORE}", "collect", "--grid", "{TMP}/nosuch.yaml"], 1),
    ("tune-plot-unwritable", ["--store", "{STORE}", "tune", "--task", "{SPEC}", "--plot", "/proc/metasel/x.png"], 1),
    ("tune-budget-zero", ["--store", "{STORE}", "tune", "--task", "{SPEC}", "--budget", "0"], 2),
    ("engines-install-unknown", ["engines", "install", "tensorrt"], 1),
    ("engines-uninstall-unknown", ["engines", "uninstall", "tensorrt"], 1),
    ("unknown-command", ["frobnicate"], 2),
]


def main() -> None:
    FILES.mkdir(parents=True, exist_ok=True)
    for old in FILES.rglob("*"):
        if old.is_file():
            old.unlink()
    cases = []

    def put(name: str, content, args: list[str], exit_code: int = 1, kind: str = "file") -> None:
        path = FILES / name
        if isinstance(content, dict):
            path.mkdir(parents=True, exist_ok=True)
            for fname, text in content.items():
                (path / fname).write_bytes(text.encode() if isinstance(text, str) else text)
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        cases.append({"id": name, "file": name, "args": args, "exit": exit_code, "kind": kind})

    for name, content in yaml_cases().items():
        put(name, content, ["validate", "{FILE}"], kind="task spec")
    for name, content in grid_cases().items():
        put(name, content, ["validate", "{FILE}"], kind="grid spec")
    for name, content in csv_cases().items():
        put(name, content, ["--store", "{STORE}", "import", "{FILE}"], kind="CSV import")
    for name, content in features_cases().items():
        put(name, content, ["--store", "{STORE}", "import", "{DATA}", "--features", "{FILE}"], kind="features CSV")
    for name, content in folds_cases().items():
        put(name, content, ["evaluate", "--data", "{DATA}", "--protocol", "folds", "--folds", "{FILE}", "--out",
                            "{TMP}/ev"], kind="folds CSV")
    for name, content in export_cases().items():
        put(name, content, ["--store", "{STORE}", "import", "{FILE}", "--format", "metasel"], kind="export folder")
    # (".store", not ".sqlite": the repository ignores *.sqlite)
    for name, content in {"spec-as-store.store": SPEC, "zero-byte.store": b"",
                          "not-sqlite.store": b"this is not a database" * 100}.items():
        put(name, content, ["--store", "{FILE}", "show"], kind="store file")
    for case_id, args, code in ARG_CASES:
        cases.append({"id": case_id, "file": None, "args": args, "exit": code, "kind": "command line"})
    (HERE / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"wrote {len(cases)} cases ({sum(c['file'] is not None for c in cases)} files) to {HERE}")


if __name__ == "__main__":
    main()
