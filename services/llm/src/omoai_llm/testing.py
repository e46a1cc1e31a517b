"""A tiny random causal LM for tests and benchmarks: a byte-level BPE tokenizer trained on a few
sentences, a chat template, and a two-layer Llama with random weights, saved with
``save_pretrained`` so it loads by path like any real model. Its output is gibberish (which is
the point: the alignment must survive it).
"""

from __future__ import annotations

from pathlib import Path

CORPUS = (
    "xin chào các bạn hôm nay chúng ta nói về trí tuệ nhân tạo và học máy",
    "cuộc họp bắt đầu lúc chín giờ sáng, mọi người đã có mặt đầy đủ.",
    "hello everyone, today we talk about artificial intelligence and machine learning.",
    "the meeting starts at nine o'clock; thank you all for coming!",
    "tóm tắt: dự án hoàn thành đúng hạn. Ý chính: chi phí giảm, chất lượng tăng.",
    '{"title": "Meeting", "abstract": "A short meeting.", "bullets": ["one", "two"]}',
)

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def write_tiny_model(
    directory: Path,
    *,
    hidden_size: int = 32,
    layers: int = 2,
    vocab_size: int = 512,
    context: int = 4096,
    chat_template: bool = True,
    seed: int = 0,
    initializer_range: float = 1.0,
) -> Path:
    """Create the model in ``directory`` (created if missing) and return it.

    A wide ``initializer_range`` makes the random model babble varied tokens instead of repeating
    one newline forever, so tests see words, punctuation and bytes in its answers.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(CORPUS) * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = context
    fast.save_pretrained(directory)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory
