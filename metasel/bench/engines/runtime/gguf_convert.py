"""Run llama.cpp's ``convert_hf_to_gguf.py`` (vendored in llama-cpp-python's sdist) on a metasel checkpoint.

Usage: ``python gguf_convert.py CONVERTER_DIR CHECKPOINT OUTFILE OUTTYPE`` (f32, f16, q8_0 from the
converter; q4_K_M and q4_0 through llama.cpp's quantiser). The checkpoint's
word-level tokenizer is unknown to the converter's table of pre-tokenizer hashes, so the
pre-tokenizer is named ``default`` here; prompts reach llama.cpp as token ids, never as text.
"""

import runpy
import sys


QUANTISED = {"q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0"}


def main(argv):
    conv_dir, checkpoint, outfile, outtype = argv[1:5]
    if outtype in QUANTISED:  # the converter writes f32; llama.cpp's own quantiser makes the k-quants
        import os

        import llama_cpp

        f32 = outfile + ".f32.gguf"
        convert(conv_dir, checkpoint, f32, "f32")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, QUANTISED[outtype])
        rc = llama_cpp.llama_model_quantize(f32.encode(), outfile.encode(), params)
        os.remove(f32)
        if rc != 0:
            raise SystemExit(f"llama_model_quantize to {outtype} failed (return code {rc})")
        return
    convert(conv_dir, checkpoint, outfile, outtype)


def convert(conv_dir, checkpoint, outfile, outtype):
    sys.path[:0] = [conv_dir, f"{conv_dir}/gguf-py"]
    import conversion.base as base

    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "default"
    sys.argv = [f"{conv_dir}/convert_hf_to_gguf.py", checkpoint, "--outfile", outfile, "--outtype", outtype]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv)
