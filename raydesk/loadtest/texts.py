"""What simulated customers say: FAQ questions, off-topic questions, requests for a human.

The FAQ is a small shop's, installed with ``PUT /v1/faq`` when the load test starts its own
raydesk; against a running raydesk, ``--faq FILE`` takes the questions from the operator's
own FAQ file instead, so that the bot answers them as it would answer real customers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from raydesk.schema import FaqItem

FAQ: tuple[FaqItem, ...] = tuple(FaqItem(id=item_id, question=question, answer=answer,
                                         alternates=list(alternates)) for
                                 item_id, question, answer, alternates in (
    ("shipping-time", "How long does shipping take?",
     "Orders ship within 24 hours and arrive in 2 to 5 working days.",
     ("when will my order arrive", "how many days is delivery")),
    ("track-order", "How do I track my order?",
     "Use the tracking link in your confirmation email.",
     ("where is my parcel", "where can I see my order status")),
    ("return-policy", "What is your return policy?",
     "You can return any item within 30 days for a full refund.",
     ("can I send an item back", "how do returns work")),
    ("refund-time", "When will I get my refund?",
     "Refunds reach your account 3 to 5 working days after we receive the item.",
     ("how long does a refund take", "I have not received my refund yet")),
    ("reset-password", "How do I reset my password?",
     "Use the 'Forgot password' link on the sign-in page.",
     ("I forgot my password", "I cannot log in to my account")),
    ("payment-methods", "Which payment methods do you accept?",
     "We accept cards, PayPal and bank transfer.",
     ("can I pay with paypal", "do you take credit cards")),
    ("change-address", "Can I change my delivery address?",
     "Yes, until the order ships: edit it under 'My orders'.",
     ("I gave the wrong address", "how do I update my shipping address")),
    ("cancel-order", "How do I cancel my order?",
     "Open 'My orders' and choose 'Cancel' before it ships.",
     ("I want to cancel my purchase", "can I still cancel")),
))

OFF_TOPIC = (
    "what is the weather like in Lisbon tomorrow",
    "can you recommend a good science fiction novel",
    "who won the football match last night",
    "my cat keeps knocking things off the table",
    "is it better to rent or to buy a flat",
    "how do I make sourdough bread",
    "what time is it in Tokyo",
    "tell me something interesting about octopuses",
)

HUMAN = (
    "I want to talk to a human",
    "can I speak to a real person please",
    "let me talk to an agent",
    "转人工",
    "I need a human, this is urgent",
)

KINDS = ("faq", "offtopic", "human")


def faq_questions(items: Sequence[FaqItem]) -> tuple[str, ...]:
    """Every question and paraphrase of an FAQ set, as customers might ask them."""
    return tuple(text for item in items for text in (item.question, *item.alternates))


@dataclass(frozen=True)
class Mix:
    """The share of each kind of customer message (normalised to sum to 1)."""

    faq: float = 0.6
    offtopic: float = 0.2
    human: float = 0.2

    @classmethod
    def parse(cls, text: str) -> Mix:
        """``faq=0.6,offtopic=0.2,human=0.2`` (kinds left out count 0)."""
        shares = dict.fromkeys(KINDS, 0.0)
        for part in filter(None, (p.strip() for p in text.split(","))):
            kind, sep, value = part.partition("=")
            if not sep or kind.strip() not in shares:
                raise ValueError(f"{part!r}: expected KIND=SHARE with KIND one of "
                                 f"{', '.join(KINDS)}")
            share = float(value)
            if share < 0:
                raise ValueError(f"{part!r}: a share cannot be negative")
            shares[kind.strip()] = share
        if sum(shares.values()) <= 0:
            raise ValueError("the mix needs at least one positive share")
        return cls(**shares)


class Phrasebook:
    """Picks the text of each customer message by the mix; deterministic per seed."""

    def __init__(self, mix: Mix, questions: Sequence[str], seed: int) -> None:
        self._rng = random.Random(seed)
        self._texts = {"faq": tuple(questions) or faq_questions(FAQ), "offtopic": OFF_TOPIC,
                       "human": HUMAN}
        self._weights = [mix.faq, mix.offtopic, mix.human]

    def pick(self) -> tuple[str, str]:
        """A message: ``(kind, text)``."""
        kind = self._rng.choices(KINDS, self._weights)[0]
        return kind, self._rng.choice(self._texts[kind])
