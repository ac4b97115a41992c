"""What the API takes and answers, declared once as pydantic types.

:func:`build` makes one app's types from its limits (the settings
``SENTIMENT_CLF_MAX_QUERY_CHARS`` and ``SENTIMENT_CLF_MAX_BATCH``), with the model
names and label sets of :data:`sentiment_clf.tasks.MODELS`. The same objects
validate the input (``inputs.py``, ``ui.py``) and make the OpenAPI document
(``openapi.py``); nothing else restates a limit, a name or a label.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, NotRequired, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    create_model,
    with_config,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from typing_extensions import TypedDict

from sentiment_clf.tasks import MODELS, endpoint_models

# The model tiers: "fast" (linear models) and "accurate" (the fine-tuned transformer).
VARIANTS = ("fast", "accurate")
# The yes/no words of a flag in the URL or a form (absent is no).
FLAG_WORDS = {"1": True, "true": True, "0": False, "false": False}
# The page classifies reviews of at least this many characters (surrounding space aside).
MIN_REVIEW_CHARS = 3
VERDICTS = ("correct", "incorrect")
# The field that says which model a feedback body or a page's answer is about.
TAG = "model"

IdempotencyKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,200}$"), Field(
    description="a retry with the same key returns the first id")]
_CLOSED = ConfigDict(extra="forbid")  # an answer holds these keys and no others
_Unit = Annotated[float, Field(ge=0, le=1)]


# -- answers that do not depend on the limits ----------------------------------

class Term(TypedDict):
    term: str
    weight: float


class FastExplanation(TypedDict):
    """The fast tier: which terms pushed the answer toward its label and away from ``versus``."""

    versus: str
    margin: float
    bias: float
    toward: list[Term]
    away: list[Term]


class AccurateExplanation(TypedDict):
    """The accurate tier, leave-one-word-out: how much the predicted label's probability
    drops without each word (``toward``), or rises (``away``)."""

    method: Literal["leave-one-word-out"]
    words: Annotated[int, Field(ge=0, description="the words explained: a text's first 64 at most, read alone")]
    predicted_probability: float
    toward: list[Term]
    away: list[Term]


Explanation = FastExplanation | AccurateExplanation


@with_config(_CLOSED)
class Read(TypedDict):
    """How much of the text the model read: the fast tier reads every token (a window is a
    sentence); the transformer reads windows of 128 word pieces, up to a set number."""

    tokens: Annotated[int, Field(ge=0, description="tokens read (word pieces for the accurate tier)")]
    text_tokens: Annotated[int, Field(ge=0, description="tokens in the whole text")]
    windows: Annotated[int, Field(ge=1, description="windows (fast tier: sentences) the answer combines")]
    truncated: Annotated[bool, Field(description="true when the end of the text was not read")]


@with_config(_CLOSED)
class Error(TypedDict):
    message: str


@with_config(_CLOSED)
class FeedbackId(TypedDict):
    id: Annotated[int, Field(ge=1)]
    learned: Annotated[bool, Field(description="learned online now (else stored for the next retrain)")]
    reason: NotRequired[Annotated[str, Field(description="why the answer is not learned online")]]


if TYPE_CHECKING:  # mypy cannot read a Literal made from MODELS
    ModelName = str
else:
    ModelName = Literal[tuple(MODELS)]


class ModelVersion(TypedDict):
    version: str
    labels: list[str]


if TYPE_CHECKING:
    Variant = str
else:
    Variant = Literal[VARIANTS]


class Health(TypedDict):
    status: Literal["ok"]
    default_variant: Variant
    models: Annotated[dict[str, ModelVersion], Field(description="the fast tier's models")]
    accurate: Annotated[dict[str, ModelVersion], Field(description="the accurate tier's models")]


class Ready(TypedDict):
    status: Literal["ready"]
    models: list[ModelName]


class TrainingData(TypedDict):
    phrases: int | None
    feedback_learned: int


class ModelEntry(TypedDict):
    name: ModelName
    variant: Variant
    endpoint: str
    classifier: str
    learns_online: bool
    version: str
    base_version: str
    labels: list[str]
    training_data: TrainingData
    feedback_stored: Annotated[int, Field(ge=0)]
    metrics: dict[str, Any]
    decision: Annotated[dict[str, Any], Field(
        description="how the label is chosen now (the most probable, or THRESHOLDS) and, for the hate class, "
                    "its held-out precision and recall under that rule")]
    calibration: Annotated[dict[str, Any] | None, Field(
        description="the temperature fitted on dev data and the held-out expected calibration error")]
    partner: NotRequired[Annotated[dict[str, Any], Field(
        description="an accurate head's partner, when it has one: the model whose log-probabilities are blended "
                    "into the head's, and its weight (chosen on dev)")]]
    model_card: Annotated[str, Field(description="the model card's URL")]


class ModelList(TypedDict):
    models: list[ModelEntry]


# -- the Open Inference Protocol (v2) ----------------------------------------------

@with_config(_CLOSED)
class V2Error(TypedDict):
    error: str


class V2ServerMetadata(TypedDict):
    name: str
    version: str
    extensions: list[str]


class V2Tensor(TypedDict):
    name: str
    datatype: Literal["BYTES", "FP32"]
    shape: Annotated[list[int], Field(description="-1: any number of texts")]


class V2ModelMetadata(TypedDict):
    name: str
    versions: Annotated[list[str], Field(description="the version serving now")]
    platform: str
    inputs: list[V2Tensor]
    outputs: list[V2Tensor]
    parameters: Annotated[dict[str, Any], Field(
        description="labels: the order of `probabilities`' columns; variants: the tiers a request may ask for")]


class V2Live(TypedDict):
    live: bool


class V2Ready(TypedDict):
    name: NotRequired[str]
    ready: bool


class V2OutputTensor(TypedDict):
    name: Literal["label", "probabilities"]
    datatype: Literal["BYTES", "FP32"]
    shape: list[int]
    data: Annotated[list[Any], Field(description="the labels, or the probabilities row by row")]


class V2InferResponse(TypedDict):
    model_name: str
    model_version: str
    id: NotRequired[str]
    parameters: dict[str, Any]
    outputs: list[V2OutputTensor]


class V2Parameters(BaseModel):
    """A request's parameters: the tier (other parameters are ignored)."""

    variant: Variant | None = None


class V2Output(BaseModel):
    """An output asked for by name (its parameters, such as binary_data, are ignored: the
    answer is JSON)."""

    name: Literal["label", "probabilities"]
    parameters: dict[str, Any] | None = None


def _without_default(schema: dict) -> None:
    schema.pop("default", None)


def _literal(values: str | tuple[str, ...]) -> Any:
    """``Literal[values]``: the values are known only at run time, so this is a value for
    pydantic, not a type mypy can check."""
    return Literal[values]


def _typed_dict(name: str, fields: dict[str, Any]) -> type:
    """``TypedDict(name, fields)``, named at run time."""
    return TypedDict(name, fields)  # type: ignore[operator]  # mypy's TypedDict() takes only literals


def _title(name: str) -> str:
    """``questions-fine`` -> ``QuestionsFine``: a model's part of a schema name."""
    return "".join(part.title() for part in name.split("-"))


def _prediction(name: str) -> type:
    """The answer of model ``name``: its labels as keys, and its ``levels`` under theirs."""
    labels = MODELS[name].labels
    fields: dict[str, Any] = {
        "prediction": _literal(labels),
        "confidence": Annotated[_Unit, Field(description="the probability of the predicted label")],
        "probabilities": with_config(_CLOSED)(_typed_dict(f"{_title(name)}Probabilities",
                                                          {label: _Unit for label in labels})),
        "explanation": NotRequired[Explanation],  # with explain=1
        "read": Read,
        "thresholds": NotRequired[Annotated[dict[str, float], Field(
            description="the decision thresholds set for this model (THRESHOLDS): a label is the answer "
                        "whenever its probability reaches its threshold")]],
        "variant": Annotated[_literal(VARIANTS), Field(description="the tier that answered")],
        "version": Annotated[str, Field(description="the version of the model that answered")],
    }
    fields.update({key: _prediction(other) for key, other in MODELS[name].levels.items()})
    return with_config(_CLOSED)(_typed_dict(f"{_title(name)}Prediction", fields))


def _batch_results(name: str, answer: Any) -> type:
    """The answer of model ``name``'s batch endpoint: one ``answer`` per text."""
    return _typed_dict(f"{_title(name)}BatchResults", {"results": list[answer]})


class FeedbackBody(BaseModel):
    """A user's answer (``POST /feedback``); each model's body narrows ``model`` to its name
    and ``label`` to its labels."""

    model: str
    label: str
    query: str
    variant: Variant | None = None  # the tier whose answer the user saw (default: the service's)


# -- the page's answer forms -----------------------------------------------------

class VerdictForm(BaseModel):
    """The page's answer about a two-label model: its prediction was correct, or not."""

    model: str
    review: str
    prediction: str
    verdict: str
    variant: Variant | None = None  # the tier whose answer is judged

    def right_label(self) -> str:
        """The prediction, or the other label."""
        if self.verdict == "correct":
            return self.prediction
        return next(label for label in MODELS[self.model].labels if label != self.prediction)


class LabelForm(BaseModel):
    """The page's answer about a model of more labels: the right one, chosen from a list."""

    model: str
    review: str
    prediction: str = ""  # what the model said, shown on the thank-you page
    label: str
    variant: Variant | None = None

    def right_label(self) -> str:
        return self.label


def _answer_form(name: str, review: Any) -> type[BaseModel]:
    labels = MODELS[name].labels
    if len(labels) == 2:
        return create_model(f"{_title(name)}AnswerForm", __base__=VerdictForm, model=(_literal(name), ...),
                            review=(review, ...), prediction=(_literal(labels), ...),
                            verdict=(_literal(VERDICTS), ...))
    return create_model(f"{_title(name)}AnswerForm", __base__=LabelForm, model=(_literal(name), ...),
                        review=(review, ...), label=(_literal(labels), ...))


def _tagged(members: Sequence[type[BaseModel]]) -> TypeAdapter:
    """One of ``members``, chosen by the value of their TAG field."""
    union: Any = Union[*members]
    return TypeAdapter(Annotated[union, Field(discriminator=TAG)])


@dataclass(frozen=True)
class Schemas:
    """One app's request and answer types; :func:`build` makes them."""

    query: TypeAdapter  # one query, validated alone on the fast path (GET /?query=...)
    flag: TypeAdapter  # a flag's word in the URL or a form
    json_flag: TypeAdapter  # a flag in a JSON body: true, false or null
    variant: TypeAdapter  # "fast", "accurate" or null
    prediction_args: TypeAdapter  # a prediction's URL or form fields (query, flag)
    prediction_body: TypeAdapter  # a prediction's JSON body
    batch: TypeAdapter
    feedback: TypeAdapter  # one body per model (TAG), with that model's labels
    idempotency_key: TypeAdapter
    review: TypeAdapter  # a review on the page
    review_form: TypeAdapter
    answer_form: TypeAdapter  # one form per model on the page (TAG)
    predictions: dict[str, type]  # answers by model name, for the models with an endpoint
    batch_results: dict[str, type]
    v2_infer: TypeAdapter  # an Open Inference Protocol inference request


def _storable(text: str) -> str:
    """A text the database can store: PostgreSQL's text holds no NUL character."""
    if "\x00" in text:
        raise PydanticCustomError("nul_character", "holds a NUL character (\\u0000), which cannot be stored")
    return text


def build(max_query_chars: int, max_batch: int, page_models: Sequence[str]) -> Schemas:
    """The types for an app that takes queries of up to ``max_query_chars`` characters,
    batches of up to ``max_batch`` texts, and answers on the page about ``page_models``."""
    # Types made from the limits at run time: values for pydantic, which mypy sees as Any.
    query: Any = Annotated[str, Strict(), StringConstraints(strip_whitespace=True, min_length=1,
                                                            max_length=max_query_chars), Field(
        description=f"the text to classify, 1 to {max_query_chars:,} characters; surrounding space is "
                    "stripped", json_schema_extra={"pattern": r"\S"})]  # more than white space
    flag: Any = Annotated[_literal(tuple(FLAG_WORDS)), Field(description="1: also give the terms behind the answer")]
    variant_help = ("fast: the linear model; accurate: the fine-tuned transformer (default: the service's, "
                    "usually fast)")
    # URL, form: absent means the service's default, which no enum value spells
    variant_word: Any = Annotated[_literal(VARIANTS), Field(description=variant_help,
                                                            json_schema_extra=_without_default)]
    variant: Any = Annotated[_literal(VARIANTS) | None, Field(description=variant_help)]  # JSON: null too
    json_flag: Any = Annotated[StrictBool | None, Field(description="true: also give the terms behind the answer")]
    review: Any = Annotated[str, StringConstraints(strip_whitespace=True, min_length=MIN_REVIEW_CHARS,
                                                   max_length=max_query_chars),
                            Field(json_schema_extra={"pattern": r"\S[\s\S]+\S"}), AfterValidator(_storable)]
    stored_query: Any = Annotated[query, AfterValidator(_storable)]  # feedback's: stored as sent
    # Request bodies may carry other fields: they are ignored (clients can evolve).
    prediction_args = create_model("PredictionArgs", query=(query, ...), explain=(flag, "0"),
                                   variant=(variant_word, None))
    prediction_body = create_model("PredictionBody", query=(query, ...), explain=(json_flag, None),
                                   variant=(variant, None))
    batch = create_model("BatchBody", queries=(Annotated[list[query], Field(min_length=1, max_length=max_batch)], ...),
                         explain=(json_flag, None), variant=(variant, None))
    feedback = [create_model(f"{_title(name)}Feedback", __base__=FeedbackBody, model=(_literal(name), ...),
                             label=(_literal(spec.labels), ...), query=(stored_query, ...))
                for name, spec in MODELS.items()]
    predictions: dict[str, Any] = {spec.name: _prediction(spec.name) for spec in endpoint_models()}
    texts: Any = Annotated[list[query], Field(min_length=1, max_length=max_batch)]
    shape: Any = Annotated[list[Annotated[int, Field(ge=1, le=max_batch)]],
                           Field(min_length=1, max_length=1, description="[n]: the number of texts in data")]
    v2_input = create_model("V2Input", name=(_literal("text"), ...), datatype=(_literal("BYTES"), ...),
                            shape=(shape, ...), data=(texts, ...), parameters=(dict[str, Any] | None, None))
    v2_infer = create_model("V2InferRequest", id=(str | None, None), parameters=(V2Parameters | None, None),
                            inputs=(Annotated[list[v2_input], Field(min_length=1, max_length=1)], ...),
                            outputs=(list[V2Output] | None, None))
    return Schemas(
        query=TypeAdapter(query), flag=TypeAdapter(flag), json_flag=TypeAdapter(json_flag),
        variant=TypeAdapter(variant),
        prediction_args=TypeAdapter(prediction_args), prediction_body=TypeAdapter(prediction_body),
        batch=TypeAdapter(batch), feedback=_tagged(feedback), idempotency_key=TypeAdapter(IdempotencyKey),
        review=TypeAdapter(review), review_form=TypeAdapter(create_model("ReviewForm", review=(str, ""))),
        answer_form=_tagged([_answer_form(name, review) for name in page_models]),
        predictions=predictions,
        batch_results={name: _batch_results(name, answer) for name, answer in predictions.items()},
        v2_infer=TypeAdapter(v2_infer),
    )


def first_problem(exc: ValidationError, data: Any) -> tuple[tuple[str | int, ...], ErrorDetails]:
    """The problem of ``exc`` (raised for ``data``) to report, and where it is: field names and
    item indexes, without the tag pydantic puts first for a member of a tagged union.

    Pydantic lists problems field by field; a problem with a whole field comes before one
    inside it (a batch's ``explain`` before its texts), as a reader goes through a request.
    """
    tag = data.get(TAG) if isinstance(data, dict) else None
    located = []
    for error in exc.errors():
        where = error["loc"]
        if len(where) > 1 and where[0] == tag:
            where = where[1:]
        located.append((where, error))
    return min(located, key=lambda item: len(item[0]))  # min keeps the first of equals
