"""The fallback policy: from a model's analysis to what the bot does with one turn.

Pure (no I/O), so it runs in the conversation's shard with the conversation's state, and
a customer who asks for a person is handed off even when the model is down. In order:

1. The customer asks for a person in words (English or Chinese): hand off.
2. No analysis (the model is unavailable or too slow): hand off.
3. The ``human`` intent, confidently: hand off.
4. A confident FAQ match: answer it; a confident intent with a reply (greeting, thanks,
   goodbye): reply; a confident intent without one: hand off to its skill.
5. Otherwise the question is unanswered. Under ``handoff_below``, or on the
   ``max_unanswered``-th unanswered turn in a row: hand off; else ask to rephrase.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from models.base import Analysis

HUMAN = "human"

# Requests for a person. Phrases, not single words: "the agent told me", "human resources",
# "人工费" (labour fee) or "人工智能" (AI) are questions for the bot, not requests.
_HANDOFF_EN = re.compile(
    r"\b(?:(?:talk|speak|chat|connect|transfer|put)\w*(?: me)? (?:to|with|through to) "
    r"(?:a |an |the |some |your )?(?:real |live |actual )?"
    r"(?:human|person|people|agent|representative|someone|somebody|staff|operator)s?"
    r"|(?:real|live|actual) (?:human|person|people|agent)s?|human (?:agent|being|support)"
    r"|(?:customer service|support) (?:agent|representative)|representative"
    r"|(?:a |an )?(?:human|agent|person) please)\b"
    r"|^\W*(?:human|agent|person|operator|representative)s?\W*$", re.IGNORECASE)
_HANDOFF_ZH = re.compile(
    r"(?:转|找|要|接)人工(?![费智成])|人工客服|人工服务|人工坐席|转接(?:人工|客服)|真人客服|"
    r"(?:和|跟|找|要)真人|客服人员|找客服|^\W*(?:人工|客服|真人)\W*$")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

REPLIES: dict[str, dict[str, str]] = {
    "greeting": {"en": "Hello! What can I help you with?", "zh": "您好！请问有什么可以帮您？"},
    "thanks": {"en": "You're welcome! Anything else I can help with?",
               "zh": "不客气！还有其他可以帮您的吗？"},
    "goodbye": {"en": "Goodbye, and thank you for contacting us!", "zh": "再见，感谢您的咨询！"},
    "clarify": {"en": "Sorry, I'm not sure I understood. Could you say it another way? "
                      "You can also ask for a person at any time.",
                "zh": "抱歉，我不太确定您的意思，能换个说法吗？您也可以随时输入“转人工”。"},
}


def language(text: str) -> Literal["en", "zh"]:
    return "zh" if _CJK.search(text) else "en"


def wants_human(text: str) -> bool:
    return bool(_HANDOFF_EN.search(text) or _HANDOFF_ZH.search(text))


Reason = Literal["requested", "bot_unavailable", "low_confidence", "unanswered", "intent"]


@dataclass(frozen=True)
class Turn:
    """What the bot does: answer (a bot message), clarify (a bot message asking again),
    or hand off (to the queue, with ``skill`` if the intent maps to one)."""

    action: Literal["answer", "clarify", "handoff"]
    text: str = ""
    intent: str | None = None
    faq_id: str | None = None
    confidence: float = 0.0
    reason: Reason | None = None
    skill: str | None = None

    @property
    def unanswered(self) -> bool:
        """A question the bot did not answer: kept as training data."""
        return self.action != "answer" and self.reason != "requested"


@dataclass(frozen=True)
class FallbackPolicy:
    threshold: float = 0.6
    handoff_below: float = 0.3
    max_unanswered: int = 2
    # Intents the bot does not answer itself but routes: intent -> routing skill.
    intent_skills: Mapping[str, str] = field(default_factory=dict)
    replies: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: REPLIES)

    def decide(self, text: str, analysis: Analysis | None, unanswered: int) -> Turn:
        """``unanswered``: the conversation's unanswered turns in a row before this one."""
        if wants_human(text):
            return Turn("handoff", reason="requested")
        if analysis is None:
            return Turn("handoff", reason="bot_unavailable")
        # A confidence without a name to go with it counts for nothing.
        intent = analysis.intent or None
        ic = analysis.intent_confidence if intent else 0.0
        fc = analysis.faq_confidence if analysis.faq_id and analysis.faq_answer else 0.0
        if intent == HUMAN and ic >= self.threshold:
            return Turn("handoff", intent=intent, confidence=ic, reason="requested")
        replies = self.replies
        lang = language(text)
        reply = replies.get(intent or "", {})
        if analysis.faq_id and analysis.faq_answer and fc >= self.threshold \
                and (fc >= ic or not reply):
            return Turn("answer", analysis.faq_answer, faq_id=analysis.faq_id, confidence=fc)
        if intent and ic >= self.threshold:
            if reply:
                return Turn("answer", reply.get(lang) or reply["en"], intent=intent,
                            confidence=ic)
            return Turn("handoff", intent=intent, confidence=ic, reason="intent",
                        skill=self.intent_skills.get(intent))
        # The model's best guess, kept with the unanswered question.
        guess_intent = intent if ic >= fc else None
        guess_faq = None if ic >= fc else analysis.faq_id
        confidence = max(ic, fc)
        if confidence < self.handoff_below or unanswered + 1 >= self.max_unanswered:
            reason: Reason = "low_confidence" if confidence < self.handoff_below \
                else "unanswered"
            return Turn("handoff", "", guess_intent, guess_faq, confidence, reason)
        clarify = replies.get("clarify") or REPLIES["clarify"]
        return Turn("clarify", clarify.get(lang) or clarify["en"], guess_intent, guess_faq,
                    confidence)
