"""The Open Inference Protocol (v2) beside the service's API, through a client nobody here
wrote: the tritonclient package's HTTP client, against the real server."""
import numpy as np
import pytest
import requests

from sentiment_clf.tasks import MODELS, endpoint_models

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed (requirements-test.txt)")
from tritonclient.utils import InferenceServerException  # noqa: E402 - after the skip

TEXTS = ["that movie was boring", "a gorgeous, witty and moving film", "What is the capital of Peru?",
         "RT @user: you are a wonderful person http://t.co/x", "Who wrote Hamlet?"]


@pytest.fixture(scope="module")
def client(live_server):
    found = httpclient.InferenceServerClient(url=live_server.url.removeprefix("http://"))
    yield found
    found.close()


def infer(client, name: str, texts: list[str], variant: str | None = None):
    text = httpclient.InferInput("text", [len(texts)], "BYTES")
    text.set_data_from_numpy(np.array(texts, dtype=np.object_), binary_data=False)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=False) for name in ("label", "probabilities")]
    return client.infer(name, [text], outputs=outputs, parameters={"variant": variant} if variant else None)


def test_the_server_and_every_model_are_live_ready_and_described(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "sentiment-clf"
    for spec in endpoint_models():
        assert client.is_model_ready(spec.name)
        metadata = client.get_model_metadata(spec.name)
        assert metadata["parameters"]["labels"] == list(spec.labels)
        assert {o["name"]: o["datatype"] for o in metadata["outputs"]} == {"label": "BYTES", "probabilities": "FP32"}
        assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert not client.is_model_ready("questions-fine")  # a level of /questions, not a model of its own


@pytest.mark.parametrize("variant", ["fast", "accurate"])
@pytest.mark.parametrize("spec", endpoint_models(), ids=lambda spec: spec.name)
def test_inference_answers_as_the_batch_endpoint_does(client, live_server, spec, variant):
    result = infer(client, spec.name, TEXTS, variant)
    labels = [label.decode() if isinstance(label, bytes) else label for label in result.as_numpy("label")]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (len(TEXTS), len(spec.labels)) and probabilities.dtype == np.float32
    batch = requests.post(f"{live_server.url}{spec.batch_endpoint}", json={"queries": TEXTS, "variant": variant},
                          timeout=60).json()["results"]
    assert labels == [answer["prediction"] for answer in batch]
    expected = [[answer["probabilities"][label] for label in spec.labels] for answer in batch]
    np.testing.assert_allclose(probabilities, np.array(expected, dtype=np.float32), rtol=0, atol=0)
    response = result.get_response()
    assert response["model_version"] == batch[0]["version"] and response["parameters"] == {"variant": variant}


def test_the_default_tier_answers_without_parameters(client):
    assert infer(client, "sentiment", TEXTS[:1]).get_response()["parameters"] == {"variant": "fast"}


@pytest.mark.parametrize("call, fragment", [
    (lambda c: infer(c, "nope", ["fine"]), "no model 'nope': the models are sentiment"),
    (lambda c: infer(c, "sentiment", ["   "]), "inputs[0].data[0]: the text is empty"),
    (lambda c: infer(c, "sentiment", ["fine"], "slow"), "parameters.variant: Input should be 'fast' or 'accurate'"),
])
def test_errors_reach_the_client_as_the_protocol_says(client, call, fragment):
    with pytest.raises(InferenceServerException, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        call(client)


def test_binary_tensors_are_refused_with_a_message_that_says_what_to_send(client):
    text = httpclient.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array(["fine"], dtype=np.object_), binary_data=True)
    with pytest.raises(InferenceServerException, match="binary tensor data is not read here"):
        client.infer("sentiment", [text])


def test_errors_are_json_with_an_error_key(live_server):
    for response in (requests.get(f"{live_server.url}/v2/models/nope", timeout=10),
                     requests.post(f"{live_server.url}/v2/models/sentiment/infer", data="{", timeout=10,
                                   headers={"Content-Type": "application/json"}),
                     requests.delete(f"{live_server.url}/v2/models/sentiment/infer", timeout=10)):
        assert response.status_code in (400, 404, 405) and set(response.json()) == {"error"}, response.text
    assert set(requests.get(f"{live_server.url}/nope", timeout=10).json()) == {"message"}  # the service's own API


def test_every_model_is_served_by_the_protocol():
    assert {spec.name for spec in endpoint_models()} < set(MODELS)
