"""ONNX Runtime GenAI: the checkpoint built into an ONNX model by the GenAI model builder.

Settings: ``precision`` (``fp32``, ``int4``: the builder's ``-p``; one artifact each) and
``max_batch`` (requests per generator). A batch is left-padded with the pad token; the
generator runs ``min_length = max_length`` so the end token never stops it, and every
``generate_next_token`` stamps a token for each request of the batch. Threads are set on
the decoder's session through a config overlay.
"""

from __future__ import annotations

import json
import sys

import artifacts


def versions() -> dict:
    import onnxruntime
    import onnxruntime_genai as og

    return {"onnxruntime-genai": og.__version__, "onnxruntime": onnxruntime.__version__}


class Backend:
    def __init__(self, checkpoint: str, settings: dict, threads: int):
        import numpy as np
        import onnxruntime_genai as og

        self.og, self.np = og, np
        precision = settings.get("precision", "fp32")
        self.max_batch = int(settings.get("max_batch", 1))
        self.exact = precision == "fp32"
        out, self.convert_s = artifacts.converted(
            checkpoint, f"ort-genai-{og.__version__}-{precision}",
            lambda tmp: [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", checkpoint, "-o", tmp,
                         "-p", precision, "-e", "cpu"])
        cfg = og.Config(out)
        cfg.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": int(threads), "inter_op_num_threads": 1}}}}))
        self.model = og.Model(cfg)

    def _generate(self, prompts, n, on_token):
        import loadgen

        og, np = self.og, self.np
        ids, _ = loadgen.left_pad(prompts)
        width = len(ids[0])
        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=width + n, min_length=width + n, batch_size=len(prompts), do_sample=False)
        gen = og.Generator(self.model, params)
        gen.append_tokens(np.array(ids, dtype=np.int32))
        while not gen.is_done():
            gen.generate_next_token()
            for i, tok in enumerate(gen.get_next_tokens()):
                on_token(i, int(tok))

    def greedy(self, prompt, n):
        out = []
        self._generate([prompt], n, lambda i, tok: out.append(tok))
        return out

    def run_batch(self, prompts, n, on_token, stamp=None):
        self._generate(prompts, n, lambda i, tok: on_token(i))
