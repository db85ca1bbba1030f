"""OpenVINO GenAI: the checkpoint exported to OpenVINO IR by optimum-intel, served by ``LLMPipeline``.

Settings: ``weight_format`` (``fp32``, ``int8``, ``int4``: optimum-cli's ``--weight-format``,
one artifact each; int4 with a group size that divides the hidden size) and ``max_batch``.
Requests go in as token ids (``TokenizedInputs``, left-padded), ``ignore_eos`` keeps every
request at ``output_len`` tokens. A single request is streamed, so each token is stamped;
OpenVINO streams only batch size 1, so for a batch the first token's time is the pipeline's
own TTFT (``perf_metrics``) and every request finishes with the batch. Compute runs at f32
(``INFERENCE_PRECISION_HINT``); the weights are what ``weight_format`` made them.
"""

from __future__ import annotations

import os
import sys
import time

import artifacts


def versions() -> dict:
    import openvino
    import openvino_genai

    return {"openvino-genai": openvino_genai.__version__, "openvino": openvino.__version__}


def _group_size(checkpoint: str) -> int:
    """The largest int4 group size that divides every matrix's input width (hidden and MLP sizes)."""
    cfg = artifacts.model_config(checkpoint)
    widths = [int(cfg["hidden_size"]), int(cfg.get("intermediate_size") or cfg["hidden_size"])]
    for g in (128, 64, 32, 16):
        if all(w % g == 0 for w in widths):
            return g
    raise NotImplementedError(f"int4 weights need hidden and intermediate sizes divisible by 16, this model has {widths}")


class Backend:
    def __init__(self, checkpoint: str, settings: dict, threads: int):
        import openvino_genai as og

        self.og = og
        fmt = settings.get("weight_format", "fp32")
        self.max_batch = int(settings.get("max_batch", 1))
        self.exact = fmt == "fp32"
        extra = ["--group-size", str(_group_size(checkpoint)), "--ratio", "1.0"] if fmt == "int4" else []
        out, self.convert_s = artifacts.converted(
            checkpoint, f"openvino-{og.__version__}-{fmt}",
            lambda tmp: [os.path.join(os.path.dirname(sys.executable), "optimum-cli"), "export", "openvino",
                         "--model", checkpoint, "--task", "text-generation-with-past", "--weight-format", fmt,
                         *extra, tmp])
        # f32 compute, whatever the weights: with the CPU plugin's default precision the fp32 IR
        # failed the token gate (10 of 16 greedy tokens) on one of two tasks; with the hint, 16 of 16
        self.pipe = og.LLMPipeline(out, "CPU", INFERENCE_NUM_THREADS=int(threads), INFERENCE_PRECISION_HINT="f32")

    def _inputs(self, prompts):
        import loadgen
        import numpy as np
        import openvino as ov

        ids, mask = loadgen.left_pad(prompts)
        return self.og.TokenizedInputs(ov.Tensor(np.array(ids, dtype=np.int64)), ov.Tensor(np.array(mask, dtype=np.int64)))

    def _config(self, n):
        cfg = self.og.GenerationConfig()
        cfg.max_new_tokens, cfg.min_new_tokens, cfg.ignore_eos, cfg.do_sample = n, n, True, False
        return cfg

    def greedy(self, prompt, n):
        return list(self.pipe.generate(self._inputs([prompt]), self._config(n)).tokens[0])

    def run_batch(self, prompts, n, on_token, stamp=None):
        og = self.og
        if len(prompts) == 1:
            class Clock(og.StreamerBase):
                def write(self, token):
                    on_token(0)
                    return og.StreamingStatus.RUNNING

                def end(self):
                    pass

            self.pipe.generate(self._inputs(prompts), self._config(n), Clock())
            return
        t0 = time.perf_counter()
        res = self.pipe.generate(self._inputs(prompts), self._config(n))
        stamp(t0 + res.perf_metrics.get_ttft().mean / 1000.0, time.perf_counter())
