"""Turn-taking: when has the caller finished, and what may the bot do before it is sure.

- ``smart_turn``: the smart-turn v3 audio model (P(turn complete)); load once, run in a thread.
- ``text``: what the partial transcript says about being finished (pure).
- ``decision``: the end-of-turn state machine (pure, clock-free) -> Pause / Resume / Commit.
- ``speculation``: speculative replies per turn (pure): start, cancel, release, hold tools.

Wiring into a call's turn loop (one ``TurnDetector`` and one ``SpeculativeTurns`` per call)::

    for p in vad_probabilities:                       # every 32 ms Silero window
        for event in detector.frame(p, WINDOW_MS): handle(event)

    TurnStarted(at_ms)        -> remember the onset
    Pause(at_ms, pause_id)    -> audio = turn audio from onset - 200 ms to at_ms; in parallel:
                                 text = await stt.transcribe_async(audio)
                                    -> act(spec.transcript(pause_id, text))
                                    -> handle each of detector.transcript(text, pause_id)
                                 p = await turn_model.predict_async(audio)
                                    -> handle each of detector.turn_probability(p, pause_id)
    Resume(pause_id)          -> act(spec.resume(pause_id)); cancel that pause's STT/model tasks
    Commit(decision)          -> act(spec.commit(decision.text or a fresh transcript,
                                                 decision.pause_id));
                                 log decision.ended_by / wait_ms / silence_ms

    act: StartReply -> generate (LLM + TTS) into a buffer, play nothing;
         CancelReply -> cancel that task, discard its buffer;
         ReleaseReply -> play the buffer, run held_tools in order;
         RestartReply -> generate and play at once.
    A reply's tool call goes through spec.tool_call(attempt, call): "run" / "hold" / "drop";
    the player checks spec.may_speak(attempt) before sending audio.
    When the bot asks something: detector.expect(text.expectation_of(reply_text)).
"""
