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


#: The label vocabulary of the published Seq2Labels punctuation checkpoints (``vocabulary/labels.txt``).
SEQ2LABELS_LABELS = (
    "$KEEP",
    "$TRANSFORM_CASE_CAPITAL",
    "$APPEND_,",
    "$APPEND_.",
    "$TRANSFORM_VERB_VB_VBN",
    "$TRANSFORM_CASE_UPPER",
    "$APPEND_:",
    "$APPEND_?",
    "$TRANSFORM_VERB_VB_VBC",
    "$TRANSFORM_CASE_LOWER",
    "$TRANSFORM_CASE_CAPITAL_1",
    "$TRANSFORM_CASE_UPPER_-1",
    "$MERGE_SPACE",
    "@@UNKNOWN@@",
    "@@PADDING@@",
)
D_TAGS = ("CORRECT", "INCORRECT", "@@UNKNOWN@@", "@@PADDING@@")


def _wordpiece_tokenizer(directory: Path, context: int) -> object:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizerFast  # type: ignore[attr-defined]  # exported lazily

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False
    )
    tok.train_from_iterator(list(CORPUS) * 4, trainer)
    fast = BertTokenizerFast(
        tokenizer_object=tok,
        do_lower_case=False,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.model_max_length = context
    fast.save_pretrained(directory)
    return fast


def _bert_sizes(hidden_size: int, layers: int, context: int, heads: int = 4, ffn: int = 2) -> dict[str, object]:
    return {
        "hidden_size": hidden_size,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": hidden_size * ffn,
        "max_position_embeddings": context,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu",
        "pad_token_id": 0,
    }


def write_tiny_seq2labels(
    directory: Path,
    *,
    hidden_size: int = 32,
    layers: int = 2,
    context: int = 128,
    seed: int = 0,
    scale: float = 4.0,
    heads: int = 4,
    ffn: int = 2,
) -> Path:
    """A random Seq2Labels tagger in the published layout: ``config.json`` naming ``Seq2LabelsModel``
    with the encoder's sizes, ``vocabulary/labels.txt`` and ``d_tags.txt``, a WordPiece tokenizer,
    and ``pytorch_model.bin`` with ``bert.*``, ``classifier.*`` and ``detector.*`` (one embedding row
    more than the tokenizer: ``$START``). ``scale`` widens the heads so labels vary from word to word."""
    import json

    import torch
    from transformers import BertConfig, BertModel

    directory = Path(directory)
    (directory / "vocabulary").mkdir(parents=True, exist_ok=True)
    fast = _wordpiece_tokenizer(directory, context)
    sizes = _bert_sizes(hidden_size, layers, context, heads, ffn)
    config = {
        "architectures": ["Seq2LabelsModel"],
        "model_type": "bert",
        "pretrained_name_or_path": "FPTAI/vibert-base-cased",
        "vocab_size": len(SEQ2LABELS_LABELS),
        "num_detect_classes": len(D_TAGS),
        "special_tokens_fix": True,
        "load_pretrained": False,
        **sizes,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (directory / "vocabulary" / "labels.txt").write_text("\n".join(SEQ2LABELS_LABELS) + "\n", encoding="utf-8")
    (directory / "vocabulary" / "d_tags.txt").write_text("\n".join(D_TAGS) + "\n", encoding="utf-8")
    torch.manual_seed(seed)
    encoder = BertModel(BertConfig(vocab_size=len(fast) + 1, **sizes), add_pooling_layer=False)  # type: ignore[arg-type]
    state = {f"bert.{k}": v for k, v in encoder.state_dict().items()}
    state["classifier.weight"] = torch.randn(len(SEQ2LABELS_LABELS), hidden_size) * scale
    state["classifier.bias"] = torch.zeros(len(SEQ2LABELS_LABELS))
    state["detector.weight"] = torch.randn(len(D_TAGS), hidden_size) * scale
    state["detector.bias"] = torch.zeros(len(D_TAGS))
    torch.save(state, directory / "pytorch_model.bin")
    (directory / "README.md").write_text("---\nlicense: cc-by-sa-4.0\n---\nA random test tagger.\n", encoding="utf-8")
    return directory


#: Labels of the plain token-classification layout in the documented ``CASE|MARK`` convention.
TOKEN_LABELS = ("O", "O|,", "O|.", "O|?", "CAPITAL", "CAPITAL|,", "CAPITAL|.", "UPPER", "UPPER|.", "B-PER")


def write_tiny_token_tagger(
    directory: Path, *, hidden_size: int = 32, layers: int = 2, context: int = 128, seed: int = 0
) -> Path:
    """A random ``BertForTokenClassification`` whose ``id2label`` follows the ``CASE|MARK`` convention
    (and one label, ``B-PER``, that follows none: it must be refused)."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fast = _wordpiece_tokenizer(directory, context)
    config = BertConfig(
        vocab_size=len(fast),  # type: ignore[arg-type]
        id2label=dict(enumerate(TOKEN_LABELS)),
        label2id={label: i for i, label in enumerate(TOKEN_LABELS)},
        initializer_range=1.0,
        **_bert_sizes(hidden_size, layers, context),  # type: ignore[arg-type]
    )
    torch.manual_seed(seed)
    BertForTokenClassification(config).save_pretrained(directory)
    return directory
