"""Tokenize JSON-lines text with a SentencePiece model into Megatron's `.bin`/`.idx` (gpt3.data).

    python3 -m gpt3.preprocess --input c4-train.en_6.json.gz --tokenizer c4_en_301_5Mexp2_spm.model \\
        --output-prefix /data/c4/c4_en_6_c4_spm_text_document

One document per input line (its "text" field), tokenized and ended with the
tokenizer's end-of-sequence id (Megatron's `--append-eod`), stored as uint16
when the vocabulary fits (int32 otherwise). Lines that are not JSON objects
with a string "text" are errors naming the file and line number.
"""
from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np

from gpt3.data import token_dtype, write_indexed


def load_tokenizer(model: Path):
    import sentencepiece  # imported here so that reading .bin/.idx does not need it

    if not Path(model).is_file():
        raise FileNotFoundError(f"SentencePiece model {model} does not exist")
    return sentencepiece.SentencePieceProcessor(model_file=str(model))


def read_texts(path: Path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not a JSON line ({e.msg})") from e
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"{path}:{lineno}: expected a JSON object with a string 'text' field")
            yield record["text"]


def tokenize_file(inputs: list[Path], tokenizer_model: Path, output_prefix: Path) -> int:
    """Tokenize every document of the inputs into output_prefix.bin/.idx; returns the document count."""
    sp = load_tokenizer(tokenizer_model)
    eod = sp.eos_id()
    if eod < 0:
        raise ValueError(f"SentencePiece model {tokenizer_model} has no end-of-sequence id")
    dtype = token_dtype(sp.get_piece_size())
    documents = [np.array(sp.encode(text) + [eod], dtype=dtype) for path in inputs for text in read_texts(path)]
    write_indexed(output_prefix, documents, dtype)
    return len(documents)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, nargs="+", required=True, help="JSON-lines files (.json[.gz])")
    parser.add_argument("--tokenizer", type=Path, required=True, help="SentencePiece .model file")
    parser.add_argument("--output-prefix", type=Path, required=True, help="writes PREFIX.bin and PREFIX.idx")
    args = parser.parse_args(argv)
    count = tokenize_file(args.input, args.tokenizer, args.output_prefix)
    print(f"wrote {count} documents to {args.output_prefix}.bin/.idx")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
