"""models.policy and models.base: from a model's analysis to the bot's turn (pure)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from models.base import Analysis, rescale
from models.policy import REPLIES, FallbackPolicy, Turn, language, wants_human

POLICY = FallbackPolicy(threshold=0.6, handoff_below=0.3, max_unanswered=2,
                        intent_skills={"billing": "billing-team"})


def _faq(confidence: float, faq_id: str = "f1", answer: str = "Open 9-5.",
         intent: str | None = None, intent_confidence: float = 0.0) -> Analysis:
    return Analysis(intent=intent, intent_confidence=intent_confidence, faq_id=faq_id,
                    faq_answer=answer, faq_confidence=confidence)


# --- wants_human / language ------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "I want to talk to a human",
    "real person",
    "Real Person please",
    "转人工",
    "人工客服",
    "我要找真人",
    "can I speak to an agent",
    "Can I speak to someone?",
    "talk to somebody",
    "customer service agent",
    "live agent",
    "representative",
    "HUMAN",
])
def test_requests_for_a_person_are_recognised(text: str) -> None:
    """English and Chinese requests for a person match, whatever the case."""
    assert wants_human(text)


@pytest.mark.parametrize("text", [
    "my agent number is 5",
    "my travel agent booked it",
    "what are your opening hours?",
    "Humanity is great",
    "我的订单在哪里",
    "",
])
def test_other_texts_are_not_requests_for_a_person(text: str) -> None:
    """Texts that only contain 'agent' after another word, or 'human' inside a longer
    word, or no such word at all, do not match."""
    assert not wants_human(text)


@pytest.mark.parametrize("text", [
    "安装需要人工费吗？",
    "这个转接头支持USB-C吗？",
    "你们的人工智能产品怎么收费？",
    "How do I contact the human resources department?",
    "Which mobile operator works with this phone?",
])
def test_everyday_words_containing_a_handoff_word_are_not_requests(text: str) -> None:
    """A question that merely contains 人工/转接/human/operator inside another word or
    phrase is a question for the bot, not a request for a person."""
    assert not wants_human(text)


@pytest.mark.parametrize(("text", "lang"), [
    ("hello", "en"), ("", "en"), ("123 ?!", "en"), ("你好", "zh"), ("order 订单 42", "zh"),
    ("\u3400", "zh"), ("\uf900", "zh"), ("こんにちは", "en")])
def test_language_is_chinese_when_any_cjk_ideograph_appears(text: str, lang: str) -> None:
    """Any CJK ideograph makes a text Chinese; everything else (even kana) is English."""
    assert language(text) == lang


# --- Turn.unanswered -------------------------------------------------------------------


@pytest.mark.parametrize(("turn", "unanswered"), [
    (Turn("answer", "hi"), False),
    (Turn("clarify", "again?"), True),
    (Turn("handoff", reason="requested"), False),
    (Turn("handoff", reason="bot_unavailable"), True),
    (Turn("handoff", reason="low_confidence"), True),
    (Turn("handoff", reason="unanswered"), True),
    (Turn("handoff", reason="intent", skill="billing"), True),
])
def test_turn_unanswered(turn: Turn, unanswered: bool) -> None:
    """Every turn but an answer or a customer's own request for a person is unanswered."""
    assert turn.unanswered is unanswered


# --- FallbackPolicy.decide -------------------------------------------------------------


@pytest.mark.parametrize("text", ["I want to talk to a human", "转人工"])
def test_words_asking_for_a_person_hand_off_before_the_model(text: str) -> None:
    """A request for a person hands off as 'requested', even with a confident FAQ match
    and even when the model is unavailable."""
    expected = Turn("handoff", reason="requested")
    assert POLICY.decide(text, _faq(0.99), 0) == expected
    assert POLICY.decide(text, None, 0) == expected


def test_no_analysis_hands_off_as_bot_unavailable() -> None:
    """Without an analysis (model down or slow) the bot hands off at once."""
    assert POLICY.decide("where is my order", None, 0) == Turn(
        "handoff", reason="bot_unavailable")


def test_confident_human_intent_hands_off_as_requested() -> None:
    """The model's confident 'human' intent hands off as 'requested', over an FAQ match."""
    analysis = _faq(0.95, intent="human", intent_confidence=0.6)
    assert POLICY.decide("can someone help", analysis, 0) == Turn(
        "handoff", intent="human", confidence=0.6, reason="requested")


def test_unconfident_human_intent_is_an_unanswered_guess() -> None:
    """A 'human' intent below the threshold does not hand off as requested: it is a guess."""
    turn = POLICY.decide("hmm", Analysis("human", 0.5), 0)
    assert turn.action == "clarify"
    assert (turn.intent, turn.confidence, turn.reason) == ("human", 0.5, None)


@pytest.mark.parametrize("confidence", [0.6, 0.8, 1.0])
def test_confident_faq_match_answers(confidence: float) -> None:
    """An FAQ match at or above the threshold is answered with its stored answer."""
    assert POLICY.decide("when are you open", _faq(confidence), 0) == Turn(
        "answer", "Open 9-5.", faq_id="f1", confidence=confidence)


def test_faq_answer_is_not_translated() -> None:
    """An FAQ answer is sent as stored, even to a Chinese question."""
    turn = POLICY.decide("你们几点开门", _faq(0.9, answer="Open 9-5."), 3)
    assert (turn.action, turn.text) == ("answer", "Open 9-5.")


@pytest.mark.parametrize(("fc", "ic", "expected"), [
    (0.8, 0.8, "faq"),       # a tie: the FAQ
    (0.9, 0.7, "faq"),
    (0.7, 0.9, "greeting"),  # the small-talk reply is more confident
])
def test_faq_against_small_talk_the_more_confident_wins(fc: float, ic: float,
                                                        expected: str) -> None:
    """An FAQ match and a small-talk intent both confident: the FAQ at equal or higher
    confidence, else the small-talk reply."""
    turn = POLICY.decide("hello, when are you open", _faq(fc, intent="greeting",
                                                          intent_confidence=ic), 0)
    if expected == "faq":
        assert turn == Turn("answer", "Open 9-5.", faq_id="f1", confidence=fc)
    else:
        assert turn == Turn("answer", REPLIES["greeting"]["en"], intent="greeting",
                            confidence=ic)


def test_confident_faq_wins_over_a_more_confident_routing_intent() -> None:
    """A confident intent without a reply does not beat a confident FAQ match."""
    turn = POLICY.decide("refund?", _faq(0.7, intent="billing", intent_confidence=0.95), 0)
    assert turn == Turn("answer", "Open 9-5.", faq_id="f1", confidence=0.7)


@pytest.mark.parametrize(("faq_id", "answer"), [(None, "text"), ("f1", None), ("f1", "")])
def test_faq_match_without_id_or_answer_is_not_answered(faq_id: str | None,
                                                         answer: str | None) -> None:
    """An FAQ match lacking its id or answer is never sent, however confident."""
    turn = POLICY.decide("question", Analysis(None, 0.0, faq_id, answer, 0.9), 0)
    assert turn.action != "answer"


@pytest.mark.parametrize(("intent", "text", "lang"), [
    ("greeting", "hello", "en"), ("thanks", "thanks!", "en"), ("goodbye", "bye", "en"),
    ("greeting", "你好", "zh"), ("thanks", "谢谢", "zh"), ("goodbye", "再见", "zh")])
def test_confident_small_talk_replies_in_the_customers_language(intent: str, text: str,
                                                                lang: str) -> None:
    """A confident intent with a reply answers it, in Chinese for a Chinese text."""
    turn = POLICY.decide(text, Analysis(intent, 0.9), 1)
    assert turn == Turn("answer", REPLIES[intent][lang], intent=intent, confidence=0.9)


def test_reply_without_the_language_falls_back_to_english() -> None:
    """A custom reply table without a Chinese text replies in English."""
    policy = FallbackPolicy(replies={"greeting": {"en": "Hi!"}})
    assert policy.decide("你好", Analysis("greeting", 0.9), 0).text == "Hi!"


@pytest.mark.parametrize(("intent", "skill"), [("billing", "billing-team"),
                                               ("shipping", None)])
def test_confident_intent_without_reply_hands_off_to_its_skill(intent: str,
                                                               skill: str | None) -> None:
    """A confident intent the bot has no reply for hands off with reason 'intent' and the
    skill intent_skills maps it to (None when unmapped)."""
    assert POLICY.decide("about my bill", Analysis(intent, 0.8), 0) == Turn(
        "handoff", intent=intent, confidence=0.8, reason="intent", skill=skill)


@pytest.mark.parametrize("unanswered", [0, 1, 5])
def test_below_handoff_below_hands_off_at_once(unanswered: int) -> None:
    """Best confidence under handoff_below: hand off as 'low_confidence' on any turn,
    keeping the model's best guess."""
    turn = POLICY.decide("asdf", Analysis("billing", 0.29, "f1", "a", 0.1), unanswered)
    assert turn == Turn("handoff", "", "billing", None, 0.29, "low_confidence")


def test_guess_is_the_faq_when_it_is_more_confident() -> None:
    """Between the thresholds, the guess kept is the FAQ when it beats the intent."""
    turn = POLICY.decide("hmm", Analysis("billing", 0.35, "f1", "a", 0.5), 0)
    assert turn == Turn("clarify", REPLIES["clarify"]["en"], None, "f1", 0.5)


@pytest.mark.parametrize(("text", "lang"), [("what about the thing", "en"),
                                            ("那个东西怎么样", "zh")])
def test_between_thresholds_asks_to_rephrase(text: str, lang: str) -> None:
    """Between handoff_below (inclusive) and the threshold, the first such turn asks the
    customer to rephrase, in their language."""
    turn = POLICY.decide(text, Analysis("billing", 0.3), 0)
    assert turn == Turn("clarify", REPLIES["clarify"][lang], "billing", None, 0.3)
    assert turn.unanswered


@pytest.mark.parametrize("max_unanswered", [1, 2, 3, 5])
def test_the_max_unanswered_th_unclear_turn_hands_off(max_unanswered: int) -> None:
    """With ``unanswered`` earlier unclear turns in a row, turn ``unanswered+1`` hands off
    as 'unanswered' exactly when it reaches max_unanswered."""
    policy = FallbackPolicy(max_unanswered=max_unanswered)
    analysis = Analysis("billing", 0.45)
    actions = [policy.decide("unclear", analysis, n).action for n in range(max_unanswered)]
    assert actions == ["clarify"] * (max_unanswered - 1) + ["handoff"]
    assert policy.decide("unclear", analysis, max_unanswered - 1) == Turn(
        "handoff", "", "billing", None, 0.45, "unanswered")


def test_low_confidence_takes_precedence_over_unanswered() -> None:
    """A turn both under handoff_below and the max_unanswered-th is 'low_confidence'."""
    assert POLICY.decide("x", Analysis("billing", 0.1), 1).reason == "low_confidence"


unit = st.floats(min_value=0, max_value=1)


@given(intent=st.sampled_from([None, "greeting", "billing", "shipping", "human"]),
       ic=unit, fc=unit, has_faq=st.booleans(), unanswered=st.integers(0, 10),
       text=st.sampled_from(["what is this", "这是什么"]))
@example(intent=None, ic=1.0, fc=0.5, has_faq=True, unanswered=0, text="what is this")
def test_decide_is_always_a_consistent_turn(intent: str | None, ic: float, fc: float,
                                            has_faq: bool, unanswered: int,
                                            text: str) -> None:
    """For any analysis: answers are at or above the threshold, every handoff has a reason,
    clarify happens only between the thresholds and before max_unanswered, and a bot
    message always has text."""
    fc = fc if has_faq else 0.0
    analysis = Analysis(intent, ic, "f1" if has_faq else None, "A" if has_faq else None, fc)
    turn = POLICY.decide(text, analysis, unanswered)
    if turn.action == "answer":
        assert turn.confidence >= POLICY.threshold and turn.text
    elif turn.action == "clarify":
        assert POLICY.handoff_below <= turn.confidence < POLICY.threshold
        assert unanswered + 1 < POLICY.max_unanswered
        assert turn.text == REPLIES["clarify"][language(text)]
        # A confidence without an intent name counts for nothing.
        assert turn.confidence == max(ic if intent else 0.0, fc)
    else:
        assert turn.reason is not None and turn.text == ""


# --- models.base -----------------------------------------------------------------------


@pytest.mark.parametrize(("similarity", "expected"), [
    (-1.0, 0.0), (0.2, 0.0), (0.35, 0.5), (0.5, 1.0), (0.9, 1.0)])
def test_rescale_maps_floor_to_0_and_full_to_1(similarity: float, expected: float) -> None:
    """rescale is linear between floor and full and clipped to [0, 1]."""
    result = rescale(similarity, floor=0.2, full=0.5)
    assert result.dtype == np.float32
    assert math.isclose(float(result), expected, abs_tol=1e-6)


def test_rescale_keeps_the_shape_of_an_array() -> None:
    """An array of cosines gives an array of confidences of the same shape."""
    result = rescale(np.array([[0.0, 0.3], [0.6, 1.0]], dtype=np.float32), 0.2, 0.6)
    assert result.shape == (2, 2)
    np.testing.assert_allclose(result, [[0.0, 0.25], [1.0, 1.0]], atol=1e-6)


@given(st.floats(min_value=-1, max_value=1), st.floats(min_value=-1, max_value=1))
def test_rescale_is_monotonic_and_bounded(a: float, b: float) -> None:
    """A higher similarity never gets a lower confidence, and every one is in [0, 1]."""
    ra, rb = float(rescale(a, 0.1, 0.7)), float(rescale(b, 0.1, 0.7))
    assert 0.0 <= ra <= 1.0 and 0.0 <= rb <= 1.0
    if a <= b:
        assert ra <= rb


@given(intent=st.none() | st.text(max_size=20), ic=unit,
       faq_id=st.none() | st.text(max_size=20), answer=st.none() | st.text(max_size=50),
       fc=unit)
def test_analysis_round_trip(intent: str | None, ic: float, faq_id: str | None,
                             answer: str | None, fc: float) -> None:
    """Analysis.from_dict(to_dict()) is the same analysis."""
    analysis = Analysis(intent, ic, faq_id, answer, fc)
    assert Analysis.from_dict(analysis.to_dict()) == analysis


def test_analysis_from_a_partial_dict_has_defaults() -> None:
    """Missing or None confidences read as 0.0, missing ids as None, extra keys ignored."""
    assert Analysis.from_dict({"intent": "greeting", "intent_confidence": None,
                               "model_version": "v1"}) == Analysis("greeting", 0.0)
    back = Analysis.from_dict({"faq_confidence": "0.5"})
    assert back == Analysis(faq_confidence=0.5)
    assert isinstance(back.faq_confidence, float)
