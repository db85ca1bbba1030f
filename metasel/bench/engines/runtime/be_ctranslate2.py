"""CTranslate2: the checkpoint converted once (float32 weights), quantised at load by ``compute_type``.

Settings: ``compute_type`` (``float32``, ``int8``, ``int8_float32``; what CTranslate2 quantises
to at load time) and ``max_batch`` (requests per ``generate_batch``). Token ids go in as the
checkpoint tokenizer's names (``t17``), the end token is disabled, and the step callback
stamps every generated token.
"""

from __future__ import annotations


import artifacts


def versions() -> dict:
    import ctranslate2

    return {"ctranslate2": ctranslate2.__version__}


class Backend:
    def __init__(self, checkpoint: str, settings: dict, threads: int):
        import sys

        import ctranslate2

        self.compute_type = settings.get("compute_type", "float32")
        self.max_batch = int(settings.get("max_batch", 1))
        self.exact = self.compute_type == "float32"
        out, self.convert_s = artifacts.converted(
            checkpoint, f"ctranslate2-{ctranslate2.__version__}",
            lambda tmp: [sys.executable, "-m", "ctranslate2.converters.transformers", "--model", checkpoint,
                         "--output_dir", tmp, "--force"])
        self.gen = ctranslate2.Generator(out, device="cpu", compute_type=self.compute_type, intra_threads=threads,
                                         inter_threads=1)
        self.names = artifacts.token_names(checkpoint)

    def _tokens(self, ids):
        return [self.names[i] for i in ids]

    def greedy(self, prompt, n):
        res = self.gen.generate_batch([self._tokens(prompt)], max_length=n, min_length=n, end_token=[],
                                      include_prompt_in_result=False)
        return res[0].sequences_ids[0]

    def run_batch(self, prompts, n, on_token, stamp=None):
        def step(s):
            on_token(s.batch_id)
            return False

        self.gen.generate_batch([self._tokens(p) for p in prompts], max_length=n, min_length=n, end_token=[],
                                include_prompt_in_result=False, callback=step)
