# coding=utf-8
"""tokenizer.json (the `tokenizers` library's format) for a SentencePiece
model, so `AutoTokenizer` loads a fast ALBERT tokenizer without converting
the model at load time.

Hugging Face's own conversion reads the model through the protobuf classes
shipped with sentencepiece, which need a newer protobuf than TensorFlow
2.15 allows; this module reads the two normalizer fields it needs straight
from the protobuf wire format and writes the same JSON as `transformers`'
AlbertConverter: normalizers `` and '' -> ", NFKD + StripAccents (unless
keep_accents), Lowercase (do_lower_case), the model's precompiled charsmap,
runs of spaces -> one; Metaspace pre-tokenizer and decoder; a Unigram model
with the pieces and scores (digit-comma pieces penalised, which stands in
for the digit-comma re-encoding); [CLS] A [SEP] (B [SEP]) templates.

  text = hf_tokenizer.tokenizer_json(sp_model, spm_bytes, do_lower_case=True)
"""
import base64
import json

import sentencepiece as spm

_WIRE_VARINT, _WIRE_64, _WIRE_BYTES, _WIRE_32 = 0, 1, 2, 5
_NORMALIZER_SPEC = 3  # ModelProto.normalizer_spec
_PRECOMPILED_CHARSMAP = 2  # NormalizerSpec fields
_ADD_DUMMY_PREFIX = 3
_REMOVE_EXTRA_WHITESPACES = 4


def _varint(data, pos):
  result, shift = 0, 0
  while True:
    if pos >= len(data):
      raise ValueError("truncated SentencePiece model proto")
    byte = data[pos]
    pos += 1
    result |= (byte & 0x7F) << shift
    if not byte & 0x80:
      return result, pos
    shift += 7


def proto_fields(data):
  """Yields (field number, value) of a serialized protobuf message: ints for
  varints, bytes otherwise."""
  pos = 0
  while pos < len(data):
    key, pos = _varint(data, pos)
    number, wire = key >> 3, key & 7
    if wire == _WIRE_VARINT:
      value, pos = _varint(data, pos)
    elif wire == _WIRE_BYTES:
      size, pos = _varint(data, pos)
      value, pos = data[pos:pos + size], pos + size
    elif wire in (_WIRE_64, _WIRE_32):
      size = 8 if wire == _WIRE_64 else 4
      value, pos = data[pos:pos + size], pos + size
    else:
      raise ValueError("unsupported protobuf wire type %d" % wire)
    yield number, value


def normalizer_spec(spm_bytes):
  """(precompiled charsmap bytes, add_dummy_prefix, remove_extra_spaces)."""
  charsmap, dummy_prefix, remove_spaces = b"", True, True
  for number, value in proto_fields(spm_bytes):
    if number != _NORMALIZER_SPEC:
      continue
    for field, item in proto_fields(value):
      if field == _PRECOMPILED_CHARSMAP:
        charsmap = item
      elif field == _ADD_DUMMY_PREFIX:
        dummy_prefix = bool(item)
      elif field == _REMOVE_EXTRA_WHITESPACES:
        remove_spaces = bool(item)
  return charsmap, dummy_prefix, remove_spaces


def _normalizers(charsmap, remove_spaces, do_lower_case, keep_accents):
  steps = [{"type": "Replace", "pattern": {"String": "``"}, "content": "\""},
           {"type": "Replace", "pattern": {"String": "''"}, "content": "\""}]
  if not keep_accents:
    steps += [{"type": "NFKD"}, {"type": "StripAccents"}]
  if do_lower_case:
    steps.append({"type": "Lowercase"})
  if charsmap:
    steps.append({"type": "Precompiled", "precompiled_charsmap":
                  base64.b64encode(charsmap).decode("ascii")})
  if remove_spaces:
    steps.append({"type": "Replace", "pattern": {"Regex": " {2,}"},
                  "content": " "})
  return {"type": "Sequence", "normalizers": steps}


def _template(cls_piece, cls_id, sep_piece, sep_id):
  def special(piece, type_id):
    return {"SpecialToken": {"id": piece, "type_id": type_id}}

  def sequence(name, type_id):
    return {"Sequence": {"id": name, "type_id": type_id}}

  return {
      "type": "TemplateProcessing",
      "single": [special(cls_piece, 0), sequence("A", 0),
                 special(sep_piece, 0)],
      "pair": [special(cls_piece, 0), sequence("A", 0), special(sep_piece, 0),
               sequence("B", 1), special(sep_piece, 1)],
      "special_tokens": {
          cls_piece: {"id": cls_piece, "ids": [cls_id], "tokens": [cls_piece]},
          sep_piece: {"id": sep_piece, "ids": [sep_id], "tokens": [sep_piece]},
      }}


def _scored_piece(sp_model, index):
  """[piece, score]; digit-comma pieces ("1,", "▁1990,") lose 100, so the
  Unigram search avoids them as SentencePiece mode's re-encoding would (as
  transformers' AlbertConverter does)."""
  piece, score = sp_model.id_to_piece(index), sp_model.get_score(index)
  if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit():
    score -= 100.0
  return [piece, score]


def tokenizer_json(sp_model, spm_bytes, do_lower_case, keep_accents=False,
                   cls_piece="[CLS]", sep_piece="[SEP]"):
  """The tokenizer.json text for `sp_model` (loaded from `spm_bytes`)."""
  charsmap, dummy_prefix, remove_spaces = normalizer_spec(spm_bytes)
  size = sp_model.get_piece_size()
  special = [i for i in range(size)
             if sp_model.is_control(i) or i == sp_model.pad_id()]
  metaspace = {"type": "Metaspace", "replacement": "\u2581",
               "prepend_scheme": "always" if dummy_prefix else "never",
               "split": True}
  doc = {
      "version": "1.0", "truncation": None, "padding": None,
      "added_tokens": [{"id": i, "content": sp_model.id_to_piece(i),
                        "single_word": False, "lstrip": False,
                        "rstrip": False, "normalized": False, "special": True}
                       for i in special],
      "normalizer": _normalizers(charsmap, remove_spaces, do_lower_case,
                                 keep_accents),
      "pre_tokenizer": metaspace,
      "post_processor": _template(cls_piece, sp_model.piece_to_id(cls_piece),
                                  sep_piece, sp_model.piece_to_id(sep_piece)),
      "decoder": dict(metaspace),
      "model": {"type": "Unigram", "unk_id": sp_model.unk_id(),
                "vocab": [_scored_piece(sp_model, i) for i in range(size)],
                "byte_fallback": False},
  }
  return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"


def load(spm_bytes):
  """A SentencePieceProcessor from serialized model bytes."""
  sp_model = spm.SentencePieceProcessor()
  sp_model.LoadFromSerializedProto(spm_bytes)
  return sp_model
