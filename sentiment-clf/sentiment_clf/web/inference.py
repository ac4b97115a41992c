"""The Open Inference Protocol (v2, as KServe, Triton and MLServer speak it), beside the
service's own API: a client of those servers calls this one unchanged.

``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}`` (its
metadata), ``/v2/models/{name}/ready`` and ``POST /v2/models/{name}/infer``: a ``BYTES``
input named ``text`` of shape ``[n]`` (JSON data; the binary tensor extension is not
read), optional ``parameters.variant``, and the outputs ``label`` (``BYTES``, ``[n]``)
and ``probabilities`` (``FP32``, ``[n, k]``, in the label order the metadata lists).
``{name}`` is each model with an endpoint of its own. Errors are ``{"error": "..."}``
(``errors.py``). The answers are the batch endpoint's (``resources.answer_many``).
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from flask import current_app, request
from werkzeug.exceptions import BadRequest, NotFound

from sentiment_clf.tasks import MODELS, endpoint_models
from sentiment_clf.web.answers import Services, json_response
from sentiment_clf.web.inputs import json_body, schemas, validated
from sentiment_clf.web.resources import ServiceResource, answer_many

PLATFORM = "sentiment-clf"
# A binary tensor (the protocol's extension) announces its JSON header's length here.
BINARY_HEADER = "Inference-Header-Content-Length"


def server_version() -> str:
    try:
        return version("sentiment-clf")
    except PackageNotFoundError:  # a checkout that was not installed
        return "unknown"


def model_name(name: str) -> str:
    """``name`` if it is a model with an endpoint; a 404 that lists them otherwise."""
    names = [spec.name for spec in endpoint_models()]
    if name not in names:
        raise NotFound(f"no model {name!r}: the models are {', '.join(names)}")
    return name


class V2Server(ServiceResource):
    """``GET /v2``: the server's name, version and protocol extensions (none)."""

    def get(self):
        return {"name": PLATFORM, "version": server_version(), "extensions": []}


class V2Live(ServiceResource):
    def get(self):
        return {"live": True}


class V2Ready(ServiceResource):
    """Ready for inference: the models are loaded (they are, once the app exists)."""

    def get(self):
        return {"ready": bool(self.registry.served())}


class V2Model(ServiceResource):
    """``GET /v2/models/{name}``: the model's inputs, outputs, version and labels."""

    def get(self, name: str):
        name = model_name(name)
        labels = list(MODELS[name].labels)
        variants = ["fast", *(["accurate"] if name in self.services.accurate else [])]
        return {
            "name": name, "versions": [self.registry.get(name).version], "platform": PLATFORM,
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                        {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(labels)]}],
            "parameters": {"labels": labels, "variants": variants,
                           "default_variant": current_app.config["DEFAULT_VARIANT"]},
        }


class V2ModelReady(ServiceResource):
    def get(self, name: str):
        return {"name": model_name(name), "ready": True}


class V2Infer(ServiceResource):
    """``POST /v2/models/{name}/infer``: one answer per text of the ``text`` input."""

    def post(self, name: str):
        name = model_name(name)
        if BINARY_HEADER in request.headers:
            raise BadRequest("binary tensor data is not read here: send the inputs as JSON "
                             "(tritonclient: set_data_from_numpy(..., binary_data=False))")
        request.max_content_length = current_app.config["MAX_BATCH_BYTES"]
        asked = validated(schemas().v2_infer, json_body(any_type=True), "inference")
        [text] = asked.inputs
        if text.shape != [len(text.data)]:
            raise BadRequest(f"the input 'text' has shape {text.shape} but {len(text.data)} texts: its shape is [n] "
                             "for n texts")
        variant = (asked.parameters and asked.parameters.variant) or current_app.config["DEFAULT_VARIANT"]
        results = answer_many(self.services, name, text.data, variant)
        labels = MODELS[name].labels
        outputs = {
            "label": {"name": "label", "datatype": "BYTES", "shape": [len(results)],
                      "data": [result["prediction"] for result in results]},
            "probabilities": {"name": "probabilities", "datatype": "FP32", "shape": [len(results), len(labels)],
                              "data": [result["probabilities"][label] for result in results for label in labels]},
        }
        wanted = [output.name for output in asked.outputs] if asked.outputs else list(outputs)
        answer = {"model_name": name, "model_version": results[0]["version"] if results else "",
                  **({"id": asked.id} if asked.id is not None else {}),
                  "parameters": {"variant": variant}, "outputs": [outputs[output] for output in wanted]}
        return json_response(answer)


def add_routes(api, services: Services) -> list[str]:
    """The protocol's routes; returns the inference endpoint's name (for the rate limit)."""
    kwargs = {"services": services}
    api.add_resource(V2Server, "/v2", resource_class_kwargs=kwargs)
    api.add_resource(V2Live, "/v2/health/live", resource_class_kwargs=kwargs)
    api.add_resource(V2Ready, "/v2/health/ready", resource_class_kwargs=kwargs)
    api.add_resource(V2Model, "/v2/models/<string:name>", resource_class_kwargs=kwargs)
    api.add_resource(V2ModelReady, "/v2/models/<string:name>/ready", resource_class_kwargs=kwargs)
    api.add_resource(V2Infer, "/v2/models/<string:name>/infer", endpoint="v2_infer", resource_class_kwargs=kwargs)
    return ["v2_infer"]
