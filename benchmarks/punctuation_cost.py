"""What punctuation costs by method, measured side by side on the quality text set.

1. **Output tokens per 1,000 words**, edits mode vs rewrite mode: the expected answers of the text
   set (the punctuated text for rewrite, the ideal JSON edits for edits; chunks of
   ``--chunk-words`` words, numbered from 1 in each) counted under one tokenizer. The default
   tokenizer is a byte-level BPE trained here on the text set itself with digits split one per token
   (as Qwen and Llama 3 tokenizers do): the cheapest possible rewrite and the dearest edits, so the
   ratio is conservative. ``--tiktoken FILE`` counts with a published tiktoken vocabulary too (e.g.
   Whisper's ``multilingual.tiktoken``), ``--tokenizer DIR`` with any Hugging Face tokenizer (e.g.
   Qwen2.5's on a machine that has it). Target: edits at most 1/3 of rewrite.
2. **Words per second on this CPU**, the tagger at BERT-base size (12 layers, 768 wide, random
   weights in the Seq2Labels layout, through the service's tagger engine: windows, up to 3 decoding
   rounds) vs LLM rewrite at a 0.5B-parameter size (Qwen2-0.5B's shape: 24 layers, 896 wide,
   14/2 heads, 151,936-token head; random weights; ``generate`` with the prompt and exactly the
   expected rewrite's length), same text (``--llm-words`` words), one run, interleaved. Target: the
   tagger at least 20x faster. FLOPs per word of each are computed from the shapes.

    .venv/bin/python benchmarks/punctuation_cost.py            # both parts (a few minutes)
    .venv/bin/python benchmarks/punctuation_cost.py --quick    # small shapes, seconds
    .venv/bin/python benchmarks/punctuation_cost.py --device cuda --llm-words 2000   # on a GPU
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.punctuation_quality import read_set

# The GPT-2 family's pre-tokenization pattern (tiktoken vocabularies of that family use it).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _bpe_on(text: str, vocab: int) -> Callable[[str], int]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator([text, '{"period":[1],"comma":[2],"capital":[3],"upper":[4]}'], trainer)
    return lambda s: len(tok.encode(s).ids)


def _tiktoken(path: Path) -> Callable[[str], int]:
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    enc = tiktoken.Encoding(
        name=path.stem, pat_str=GPT2_PATTERN, mergeable_ranks=load_tiktoken_bpe(str(path)), special_tokens={}
    )
    return lambda s: len(enc.encode(s))


def _hf(directory: str) -> Callable[[str], int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    return lambda s: len(tok(s, add_special_tokens=False)["input_ids"])


def token_table(counters: dict[str, Callable[[str], int]], chunk_words: int) -> tuple[str, dict[str, float]]:
    from omoai_llm.edits import edits_of

    words = [w for p in read_set() for w in p.words]
    chunks = [words[i : i + chunk_words] for i in range(0, len(words), chunk_words)]
    rows = [
        "| tokenizer | rewrite tokens / 1,000 words | edits tokens / 1,000 words | edits / rewrite | target <= 0.33 |"
    ]
    rows.append("|---|---|---|---|---|")
    ratios = {}
    for name, count in counters.items():
        rewrite = sum(count(" ".join(c)) for c in chunks)
        edits = sum(count(json.dumps(edits_of(c), separators=(",", ":"), ensure_ascii=False)) for c in chunks)
        ratio = edits / rewrite
        ratios[name] = ratio
        per = 1000 / len(words)
        rows.append(
            f"| {name} | {rewrite * per:.0f} | {edits * per:.0f} | {ratio:.2f} | {'met' if ratio <= 1 / 3 else 'not met'} |"
        )
    return "\n".join(rows), ratios


# -- speed ------------------------------------------------------------------------------------------

QWEN2_05B = {"hidden": 896, "layers": 24, "heads": 14, "kv_heads": 2, "ffn": 4864, "vocab": 151_936}
BERT_BASE = {"hidden": 768, "layers": 12, "heads": 12, "ffn": 3072}


def _llm(shape: dict[str, int], device: str) -> Any:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=shape["vocab"],
        hidden_size=shape["hidden"],
        intermediate_size=shape["ffn"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv_heads"],
        max_position_embeddings=32_768,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).to(device).eval()


def llm_flops_per_token(shape: dict[str, int], context: int) -> float:
    """2 x multiply-adds per token: projections, MLP, LM head, and attention over ``context``."""
    h, f, layers, heads, kv = shape["hidden"], shape["ffn"], shape["layers"], shape["heads"], shape["kv_heads"]
    head_dim = h // heads
    per_layer = h * h * 2 + h * kv * head_dim * 2 + 3 * h * f + 2 * context * h
    return 2.0 * (layers * per_layer + h * shape["vocab"])


def encoder_flops_per_token(shape: dict[str, int], length: int) -> float:
    h, f, layers = shape["hidden"], shape["ffn"], shape["layers"]
    return 2.0 * layers * (4 * h * h + 2 * h * f + 2 * length * h)


def speed_table(words: list[str], *, quick: bool, device: str, count: Callable[[str], int]) -> tuple[str, float]:
    import torch
    from omoai_gpu.memory import MemoryPolicy
    from omoai_llm.tagger.engine import TaggerEngine, TaggerOptions
    from omoai_llm.testing import write_tiny_seq2labels
    from prometheus_client import CollectorRegistry

    llm_shape = dict(QWEN2_05B, layers=2, hidden=128, heads=4, ffn=512) if quick else QWEN2_05B
    tag_shape = dict(BERT_BASE, layers=2, hidden=128, heads=4, ffn=512) if quick else BERT_BASE
    text = " ".join(w.lower().strip(".,?:!") for w in words)
    policy = MemoryPolicy.from_settings(device, "fp32", debug_empty_cache=False, registry=CollectorRegistry())
    with tempfile.TemporaryDirectory() as tmp:
        path = write_tiny_seq2labels(
            Path(tmp) / "tagger",
            hidden_size=tag_shape["hidden"],
            layers=tag_shape["layers"],
            heads=tag_shape["heads"],
            ffn=tag_shape["ffn"] // tag_shape["hidden"],
            context=512,
        )
        tagger = TaggerEngine.load(str(path), policy, options=TaggerOptions(iterations=3))
        model = _llm(llm_shape, str(policy.device))
        prompt_tokens = count(text) + 60  # the rewrite prompt: the text and the instructions
        out_tokens = count(" ".join(words))  # exactly the expected rewrite's length
        ids = torch.randint(0, llm_shape["vocab"], (1, prompt_tokens), device=policy.device)

        def run_llm() -> float:
            started = time.perf_counter()
            with torch.inference_mode():
                model.generate(
                    ids, max_new_tokens=out_tokens, min_new_tokens=out_tokens, do_sample=False, pad_token_id=0
                )
            return time.perf_counter() - started

        def run_tagger() -> tuple[float, int]:
            started = time.perf_counter()
            result = asyncio.run(tagger.tag(text.split()))
            return time.perf_counter() - started, result.rounds

        run_tagger()  # warm-up (first-call allocations) for both, then interleaved
        tagger_s, rounds = run_tagger()
        llm_s = run_llm()
        tagger_s2, _ = run_tagger()
        tagger_s = min(tagger_s, tagger_s2)
        subwords = len(tagger._tok(text.split(), is_split_into_words=True, add_special_tokens=False)["input_ids"])
        windows = len(tagger.windows(text.split()))
    n = len(words)
    # Each round encodes the window's sub-words plus the marks inserted so far (at most one per word).
    window_tokens = (subwords + n) / windows
    tag_flops = encoder_flops_per_token(tag_shape, int(window_tokens)) * window_tokens * rounds / n
    llm_flops = (
        llm_flops_per_token(llm_shape, prompt_tokens) * prompt_tokens
        + llm_flops_per_token(llm_shape, prompt_tokens + out_tokens // 2) * out_tokens
    ) / n
    speedup = llm_s / tagger_s
    rows = [
        "| method | shape | words | seconds | words/s | GFLOP/word | tagger speed-up (target >= 20x) |",
        "|---|---|---|---|---|---|---|",
        f"| tagger (Seq2Labels, {rounds} rounds over {windows} windows) | "
        f"{tag_shape['layers']}x{tag_shape['hidden']} encoder | {n} | {tagger_s:.2f} | {n / tagger_s:.0f} | "
        f"{tag_flops / 1e9:.2f} | {speedup:.0f}x {'met' if speedup >= 20 else 'not met'} |",
        f"| LLM rewrite ({prompt_tokens} prompt + {out_tokens} generated tokens) | "
        f"{llm_shape['layers']}x{llm_shape['hidden']} decoder | {n} | {llm_s:.2f} | {n / llm_s:.1f} | "
        f"{llm_flops / 1e9:.2f} | 1x |",
    ]
    return "\n".join(rows), speedup


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small shapes and text (seconds): a smoke run")
    ap.add_argument("--chunk-words", type=int, default=150)
    ap.add_argument("--llm-words", type=int, default=200, help="words of the speed comparison")
    ap.add_argument("--tiktoken", type=Path, help="a .tiktoken vocabulary (GPT-2 pattern) to count with too")
    ap.add_argument("--tokenizer", help="a Hugging Face tokenizer directory or hub id to count with too")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-speed", action="store_true", help="only the token counts")
    args = ap.parse_args(argv)
    import torch

    paragraphs = read_set()
    text = "\n".join(p.text for p in paragraphs)
    own = _bpe_on(text, 4000)
    counters = {"BPE fitted to the set, digits split (4k)": own}
    if args.tiktoken:
        counters[f"tiktoken {args.tiktoken.name}"] = _tiktoken(args.tiktoken)
    if args.tokenizer:
        counters[args.tokenizer] = _hf(args.tokenizer)
    print(
        f"punctuation cost on {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}\n"
    )
    table, ratios = token_table(counters, args.chunk_words)
    print("## output tokens, edits vs rewrite (expected answers of the quality set)\n")
    print(table)
    verdicts = [
        f"edits/rewrite output tokens, {name} {ratio:.2f} (target <= 0.33: {'met' if ratio <= 1 / 3 else 'NOT met'})"
        for name, ratio in ratios.items()
    ]
    if not args.no_speed:
        words = [w for p in paragraphs for w in p.words][: 60 if args.quick else args.llm_words]
        print("\n## words per second, tagger vs LLM rewrite (random weights, same text)\n")
        speed, speedup = speed_table(words, quick=args.quick, device=args.device, count=own)
        print(speed)
        shapes = "small shapes" if args.quick else "BERT-base vs 0.5B"
        verdicts.append(
            f"tagger vs LLM rewrite words/s ({shapes}) {speedup:.0f}x (target >= 20x: {'met' if speedup >= 20 else 'NOT met'})"
        )
    print("\n- punctuation cost: " + "; ".join(verdicts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
