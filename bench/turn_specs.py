"""What the callers of the real-speech turn set say (bench/speech_set.py renders it).

Each turn is a list of phrases (str) and explicit silences (float, seconds) in the places where
people really pause on the phone: between digit groups, before the month, after "um", between
"that's all" and "oh wait". `voice` is "joe" / "joe-slow" (the real Piper joe voice at two
speeds) or "espeak:VOICE:WPM". `noise` mixes a background in over the whole file.
"""

from __future__ import annotations

from dataclasses import dataclass

Part = str | float


@dataclass(frozen=True)
class TurnSpec:
    name: str
    kind: str
    voice: str
    parts: tuple[Part, ...]
    bot_question: str | None = None
    noise: str | None = None        # "pink:12" / "brown:10" / "babble:15" (kind:SNR dB)


ASK_PHONE = "What's the best number to reach you on?"
ASK_DATE = "When would you like to come in?"
ASK_EMAIL = "Could I have your e-mail address?"
ASK_ADDRESS = "What's the delivery address?"
ASK_NAME = "Can I take your name, please?"
ASK_ELSE = "Is there anything else I can help with?"
ASK_CONFIRM = "Shall I book that for you?"
ASK_HOW = "How can I help you today?"
ASK_MODEL = "Which model do you have?"

T = TurnSpec
TURNS: tuple[TurnSpec, ...] = (
    # phone numbers read in groups
    T("phone_joe_1", "phone_number", "joe",
      ("My number is zero five two,", 0.8, "eight eight one,", 0.9, "three three four four."),
      ASK_PHONE),
    T("phone_joe_2", "phone_number", "joe-slow",
      ("It's oh five four,", 1.1, "seven seven two,", 0.7, "nine oh one oh."), ASK_PHONE),
    T("phone_es_1", "phone_number", "espeak:en-us+f3:150",
      ("Sure. Zero five eight.", 0.9, "Four four six.", 1.0, "Two one two one."), ASK_PHONE),
    T("phone_es_2", "phone_number", "espeak:en-gb+m3:165",
      ("You can call me on", 0.6, "oh three,", 0.8, "six two four,", 0.6, "eighty eight",
       0.5, "ninety."), ASK_PHONE),
    T("phone_es_3", "phone_number", "espeak:en-gb-scotland:140",
      ("Hang on, let me check.", 1.2, "It's zero five zero,", 0.9, "one one one,", 0.8,
       "two three four five."), ASK_PHONE, "pink:14"),
    # dates and times
    T("date_joe_1", "date", "joe", ("On the fourteenth,", 0.9, "of March."), ASK_DATE),
    T("date_joe_2", "date", "joe", ("Next Tuesday,", 0.7, "around", 0.6, "half past ten."),
      ASK_DATE),
    T("date_es_1", "date", "espeak:en-us+m7:155",
      ("Could we do the twenty second?", 0.8, "Of April, I mean."), ASK_DATE),
    T("date_es_2", "date", "espeak:en-029+f2:150",
      ("Any day after the", 0.9, "the third,", 0.7, "in the morning if possible."), ASK_DATE),
    # e-mail and address
    T("email_joe_1", "email", "joe-slow",
      ("It's dana,", 0.6, "dot,", 0.5, "levi,", 0.7, "at gmail", 0.5, "dot com."), ASK_EMAIL),
    T("email_es_1", "email", "espeak:en-us+f4:145",
      ("r", 0.35, "o", 0.35, "n", 0.6, "at", 0.5, "outlook dot com."), ASK_EMAIL),
    T("address_joe_1", "address", "joe",
      ("Twelve Herzl Street,", 0.9, "apartment four,", 0.8, "in Ramat Gan."), ASK_ADDRESS),
    T("address_es_1", "address", "espeak:en-gb-x-rp+m2:160",
      ("It's forty five", 0.6, "Allenby Road,", 1.0, "third floor,", 0.7,
       "the buzzer says Cohen."), ASK_ADDRESS, "brown:10"),
    # names spelled out
    T("spell_joe_1", "spelled_name", "joe",
      ("My name is Mizrahi.", 0.7, "M,", 0.45, "I,", 0.45, "Z,", 0.45, "R,", 0.45, "A,",
       0.45, "H,", 0.45, "I."), ASK_NAME),
    T("spell_es_1", "spelled_name", "espeak:en-us+m3:150",
      ("Kowalski. That's K,", 0.5, "O,", 0.5, "W,", 0.6, "A,", 0.5, "L,", 0.5, "S,", 0.5,
       "K,", 0.5, "I."), ASK_NAME),
    T("spell_es_2", "spelled_name", "espeak:en-gb+f3:155",
      ("Shira with an S H,", 0.8, "and Ben David,", 0.6, "two words."), ASK_NAME),
    # hesitations with long pauses
    T("um_joe_1", "hesitation", "joe", ("Um,", 1.1, "I think my fridge is broken."), ASK_HOW),
    T("uh_joe_2", "hesitation", "joe-slow",
      ("I'd like to book a repair for", 0.9, "uh,", 1.0, "the washing machine."), ASK_HOW),
    T("hmm_es_1", "hesitation", "espeak:en-us+f2:140",
      ("Hmm.", 1.2, "Let me think.", 0.9, "Maybe Thursday."), ASK_DATE),
    T("um_es_2", "hesitation", "espeak:en-gb-scotland+m1:150",
      ("The model is, um,", 1.0, "I'm looking at the sticker,", 0.8, "W M four five."),
      ASK_MODEL),
    T("uh_es_3", "hesitation", "espeak:en-029+m3:160",
      ("So, uh,", 0.9, "how much is the", 0.8, "the installation?"), ASK_HOW, "babble:15"),
    T("um_joe_3", "hesitation", "joe",
      ("Yes, and,", 1.0, "um,", 0.9, "can you also take the old one away?"), ASK_CONFIRM),
    # two-part turns
    T("twopart_joe_1", "two_part", "joe",
      ("No, that's all.", 1.0, "Oh wait, one more thing.", 0.6,
       "Do you deliver on Fridays?"), ASK_ELSE),
    T("twopart_joe_2", "two_part", "joe-slow",
      ("Okay, thanks.", 1.1, "Actually, can you send me that by text?"), ASK_ELSE),
    T("twopart_es_1", "two_part", "espeak:en-us+f3:160",
      ("Great, thank you.", 0.9, "Sorry, just to check,", 0.5, "is parking free there?"),
      ASK_ELSE),
    T("twopart_es_2", "two_part", "espeak:en-gb+m3:150",
      ("That's fine.", 1.2, "Well, no, hold on.", 0.7, "Make it the afternoon instead."),
      ASK_CONFIRM, "pink:12"),
    # one-word and very short answers
    T("yes_joe", "one_word", "joe", ("Yes.",), ASK_CONFIRM),
    T("no_joe", "one_word", "joe", ("No.",), ASK_ELSE),
    T("tomorrow_joe", "one_word", "joe", ("Tomorrow.",), ASK_DATE),
    T("sure_es", "one_word", "espeak:en-us+m7:160", ("Sure.",), ASK_CONFIRM),
    T("thursday_es", "one_word", "espeak:en-gb+f4:150", ("Thursday.",), ASK_DATE),
    T("yeah_es", "one_word", "espeak:en-029+f2:170", ("Yeah, please.",), ASK_CONFIRM,
      "brown:12"),
    T("nine_joe", "one_word", "joe-slow", ("Nine.",), "Would nine or eleven suit you?"),
    # questions
    T("q_hours_joe", "question", "joe", ("What time do you close on Friday?",), ASK_HOW),
    T("q_price_es", "question", "espeak:en-us+f3:155",
      ("How much is a new dishwasher, roughly?",), ASK_HOW),
    T("q_warranty_joe", "question", "joe-slow",
      ("Does the repair come with a warranty?",), ASK_ELSE),
    T("q_person_es", "question", "espeak:en-gb-x-rp+m2:150",
      ("Can I talk to someone there, a real person?",), ASK_HOW),
    T("q_deliver_es", "question", "espeak:en-gb-scotland:165",
      ("Do you deliver to Haifa?",), ASK_ELSE, "babble:12"),
    # goodbyes
    T("bye_joe", "goodbye", "joe", ("Thanks, bye.",), ASK_ELSE),
    T("bye_es", "goodbye", "espeak:en-us+m3:160",
      ("No, that's everything. Thank you so much, goodbye.",), ASK_ELSE),
    T("bye_es_2", "goodbye", "espeak:en-gb+f3:150", ("Lovely.", 0.5, "Bye now."), ASK_ELSE),
    # long complaints (15-20 s)
    T("complaint_joe_1", "complaint", "joe",
      ("Hi, I bought a fridge from you three weeks ago,", 0.6,
       "and since Monday it makes this loud clicking noise every few minutes.", 0.8,
       "The freezer part is fine,", 0.5, "but the bottom is getting warm,", 0.7,
       "and I already had to throw away a lot of food.", 0.6,
       "I really need someone to come and look at it this week."), ASK_HOW),
    T("complaint_joe_2", "complaint", "joe-slow",
      ("Your technician was supposed to come yesterday between nine and twelve.", 0.9,
       "I took the morning off work,", 0.5, "nobody came,", 0.6,
       "and nobody called me either.", 1.0,
       "So I want to know what happened,", 0.5, "and when he is actually coming."), ASK_HOW),
    T("complaint_es_1", "complaint", "espeak:en-us+f4:160",
      ("I ordered a washing machine two weeks ago and paid for installation.", 0.7,
       "The delivery people left it in the hallway,", 0.6,
       "they said the installer would come separately,", 0.8,
       "and since then I have called four times.", 0.6,
       "Every time someone says they will call me back and nobody does.", 0.7,
       "This is really not okay."), ASK_HOW),
    T("complaint_es_2", "complaint", "espeak:en-gb+m3:155",
      ("Right, so the oven you repaired last month,", 0.8,
       "the door seal is coming off again.", 0.7,
       "It's the same problem as before,", 0.5, "exactly the same corner,", 0.9,
       "and it's still under your ninety day warranty,", 0.6,
       "so I expect you to fix it at no cost."), ASK_HOW, "pink:15"),
    # medium statements
    T("book_joe", "statement", "joe",
      ("I'd like to book an appointment for a dishwasher repair.",), ASK_HOW),
    T("statement_es", "statement", "espeak:en-us+m7:150",
      ("I'm calling about my order,", 0.6, "number four four seven one."), ASK_HOW),
)
