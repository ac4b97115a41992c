"""Weights several encoders hold alike, stored once (``shared.npz`` of an accurate model).

Fine-tuning freezes the word embeddings, and int8 export quantizes them with the same
scale, so every encoder fine-tuned from the same base holds the same 11.7 MB table:
half of each encoder. :func:`share` moves what all of a model's encoders hold byte for
byte alike into one file and leaves each encoder naming it as external data; the
service hands those arrays to every session (``accurate.Encoder``). :func:`inlined`
puts them back, for tools that read an encoder's ONNX graph. Needs onnx (the
fine-tuning requirements).
"""
from __future__ import annotations

from pathlib import Path

from sentiment_clf.serving import accurate
from sentiment_clf.serving.formats import pack_arrays, unpack_arrays

MIN_BYTES = 1 << 20  # smaller weights are not worth naming twice


def share(directory: Path, files: list[str]) -> list[str]:
    """Move the initializers (of at least MIN_BYTES) that every encoder ``files`` in
    ``directory`` holds byte for byte alike into ``directory/shared.npz``, and rewrite each
    encoder to name them as external data. Returns their names (none for one encoder)."""
    import onnx
    from onnx import numpy_helper

    directory = Path(directory)
    if len(files) < 2:
        return []
    models = {file: onnx.load(str(directory / file)) for file in files}
    tables = [{t.name: t for t in model.graph.initializer if len(t.raw_data) >= MIN_BYTES}
              for model in models.values()]
    first = tables[0]
    common = sorted(name for name, tensor in first.items()
                    if all(name in table and table[name].data_type == tensor.data_type
                           and list(table[name].dims) == list(tensor.dims)
                           and table[name].raw_data == tensor.raw_data for table in tables[1:]))
    if not common:
        return []
    (directory / accurate.SHARED_FILE).write_bytes(
        pack_arrays({name: numpy_helper.to_array(first[name]) for name in common}))
    for file, model in models.items():
        for tensor in model.graph.initializer:
            if tensor.name in common:
                tensor.ClearField("raw_data")
                tensor.data_location = onnx.TensorProto.EXTERNAL
                entry = tensor.external_data.add()
                entry.key, entry.value = "location", accurate.SHARED_FILE
        (directory / file).write_bytes(model.SerializeToString())
    return common


def inlined(directory: Path, file: str):
    """The ONNX model (an ``onnx.ModelProto``) of encoder ``file`` of the saved accurate
    model in ``directory``, with its shared weights back inside."""
    import onnx
    from onnx import numpy_helper

    directory = Path(directory)
    model = onnx.load(str(directory / file), load_external_data=False)
    external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        shared = unpack_arrays((directory / accurate.SHARED_FILE).read_bytes())
        for tensor in external:
            tensor.CopyFrom(numpy_helper.from_array(shared[tensor.name], tensor.name))
    return model
